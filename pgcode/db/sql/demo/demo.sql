-- pgcode demo data set: a small shop with tables of different sizes, used and unused indexes,
-- and a products table whose jsonb data has pending items (the code-mode examples rely on it).

CREATE TABLE customers (
    id          serial PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    name        text NOT NULL,
    country     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
    id    serial PRIMARY KEY,
    data  jsonb NOT NULL
);

CREATE TABLE orders (
    id           serial PRIMARY KEY,
    customer_id  integer NOT NULL REFERENCES customers (id),
    status       text NOT NULL,
    total        numeric(12, 2) NOT NULL,
    created_at   timestamptz NOT NULL
);

CREATE TABLE order_items (
    order_id    integer NOT NULL REFERENCES orders (id),
    product_id  integer NOT NULL REFERENCES products (id),
    quantity    integer NOT NULL CHECK (quantity > 0),
    unit_price  numeric(10, 2) NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE settings (
    key    text PRIMARY KEY,
    value  text NOT NULL
);

INSERT INTO customers (email, name, country, created_at)
SELECT format('customer%s@example.com', g), format('Customer %s', g),
       (ARRAY['DE', 'FR', 'US', 'GB', 'JP', 'BR'])[1 + g % 6],
       timestamptz '2025-01-01' + g * interval '37 minutes'
FROM generate_series(1, 5000) AS g;

INSERT INTO products (data)
SELECT jsonb_build_object(
         'name', format('Product %s', g),
         'sku', format('SKU-%s', lpad(g::text, 5, '0')),
         'price', round((5 + (g * 7919) % 500 + (g % 100) / 100.0)::numeric, 2),
         'status', CASE WHEN g % 10 = 0 THEN 'pending' WHEN g % 10 = 1 THEN 'archived' ELSE 'active' END,
         'tags', jsonb_build_array((ARRAY['garden', 'kitchen', 'tools', 'toys'])[1 + g % 4]),
         'stock', (g * 31) % 200)
FROM generate_series(1, 500) AS g;

INSERT INTO orders (customer_id, status, total, created_at)
SELECT 1 + (g * 7) % 5000, (ARRAY['paid', 'shipped', 'delivered', 'cancelled'])[1 + g % 4],
       round((10 + (g * 13) % 990)::numeric, 2), timestamptz '2025-01-01' + g * interval '5 minutes'
FROM generate_series(1, 40000) AS g;

INSERT INTO order_items (order_id, product_id, quantity, unit_price)
SELECT o, 1 + (o * 17 + k * 251) % 500, 1 + (o + k) % 5, round((5 + (o * k) % 300)::numeric, 2)
FROM generate_series(1, 40000) AS o, generate_series(1, 2) AS k;

INSERT INTO events (kind, payload, created_at)
SELECT (ARRAY['login', 'view', 'search', 'checkout'])[1 + g % 4],
       jsonb_build_object('session', md5(g::text), 'ms', (g * 37) % 1500, 'path', format('/p/%s', g % 500)),
       timestamptz '2025-01-01' + g * interval '1 minute'
FROM generate_series(1, 60000) AS g;

INSERT INTO settings VALUES ('currency', 'EUR'), ('tax_rate', '0.19'), ('shop_name', 'pgcode demo shop');

-- Indexes that queries use ...
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE INDEX orders_created_at_idx ON orders (created_at);
-- ... and ones nothing uses (the unused-index example finds those over 1 MB).
CREATE INDEX events_payload_idx ON events USING gin (payload);
CREATE INDEX events_kind_created_idx ON events (kind, created_at);
CREATE INDEX orders_status_total_idx ON orders (status, total);
CREATE INDEX customers_country_idx ON customers (country);

CREATE VIEW order_totals AS
SELECT c.country, count(*) AS orders, sum(o.total) AS revenue
FROM orders o JOIN customers c ON c.id = o.customer_id
GROUP BY c.country;

COMMENT ON TABLE products IS 'Catalog items; data holds name, sku, price, status, tags and stock';
