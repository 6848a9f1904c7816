-- The trap schema of sqlite.sql, in PostgreSQL: the same rows, names quoted as written.
CREATE TABLE "Customers" (
  "CustomerID" varchar(5) PRIMARY KEY,
  "Company Name" varchar(40) NOT NULL,
  "Straße" varchar(60),
  "Photo" bytea
);
INSERT INTO "Customers"
SELECT 'C' || lpad(i::text, 3, '0'), 'Company ' || i, 'Hauptstraße ' || i, '\x89504e47'::bytea
FROM generate_series(1, 91) AS i;

CREATE TABLE "Orders" (
  "OrderID" integer PRIMARY KEY,
  "CustomerID" varchar(5),
  "OrderDate" varchar(19),
  "ShipPostalCode" varchar(10),
  "Freight" real,
  "Ship Name" varchar(40)
);
INSERT INTO "Orders"
SELECT 10248 + i,
       'C' || lpad((i % 91 + 1)::text, 3, '0'),
       to_char(timestamp '1994-08-04 15:30:00' + i * interval '1 day' + (i % 7) * interval '1 hour', 'YYYY-MM-DD HH24:MI:SS'),
       CASE WHEN i % 10 = 0 THEN NULL ELSE lpad((10000 + i * 37 % 90000)::text, 5, '0') END,
       round((i * 7919 % 100000) / 100.0, 2),
       'Ship ' || i
FROM generate_series(0, 829) AS i;

CREATE TABLE "Order Details" (
  "OrderID" integer NOT NULL,
  "ProductID" integer NOT NULL,
  "UnitPrice" real NOT NULL,
  "Quantity" smallint NOT NULL,
  "Discount" real NOT NULL
);
CREATE UNIQUE INDEX "Order Details Key" ON "Order Details" ("OrderID", "ProductID");
INSERT INTO "Order Details"
SELECT 10248 + i, (i * 13 + j * 17) % 77 + 1, round(((i + j) * 311 % 5000) / 100.0 + 1, 2),
       (i + j) % 40 + 1, CASE WHEN j = 2 THEN 0.05 ELSE 0 END
FROM generate_series(0, 829) AS i, generate_series(1, 3) AS j;

CREATE TABLE "Umsätze" (
  "Kunde" varchar(5),
  "Betrag" real,
  "Monat" varchar(7)
);
INSERT INTO "Umsätze"
SELECT 'C' || lpad((i % 6 + 1)::text, 3, '0'), round(i % 4 * 100.25, 2), '1995-' || lpad((i % 3 + 1)::text, 2, '0')
FROM generate_series(0, 23) AS i;
