FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pgcode ./pgcode
RUN pip install --no-cache-dir .
EXPOSE 8765
# --insecure: without PGCODE_AUTH_* every caller is admin; docker-compose publishes the port on 127.0.0.1 only.
CMD ["pgcode", "serve", "--host", "0.0.0.0", "--port", "8765", "--insecure"]
