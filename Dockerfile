FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pgcode ./pgcode
RUN pip install --no-cache-dir .
EXPOSE 8765
# Without PGCODE_AUTH_* configured, only loopback binding is safe; publish the port to localhost only.
CMD ["pgcode", "serve", "--host", "0.0.0.0", "--port", "8765"]
