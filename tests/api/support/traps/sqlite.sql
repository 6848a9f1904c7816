-- A schema shaped like other people's (Northwind as a new user met it in SQLite), made to hold
-- every trap `introspect` and `check` must catch. Deterministic: the tests compare exact rows.
--   "Order Details": no primary key, a unique index on (OrderID, ProductID); OrderID repeats.
--   "Umsätze": no key at all, duplicate rows, a non-ASCII table name.
--   Orders: money as REAL (Freight), dates as text with times, CamelCase names.
--   Customers: text key, a name with a space, a non-ASCII column, a binary column.
CREATE TABLE Customers (
  CustomerID TEXT PRIMARY KEY,
  "Company Name" TEXT NOT NULL,
  "Straße" TEXT,
  Photo BLOB
);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 91)
INSERT INTO Customers
SELECT 'C' || substr('000' || i, -3), 'Company ' || i, 'Hauptstraße ' || i, x'89504e47'
FROM n;

CREATE TABLE Orders (
  OrderID INTEGER PRIMARY KEY,
  CustomerID TEXT,
  OrderDate TEXT,
  ShipPostalCode TEXT,
  Freight REAL,
  "Ship Name" TEXT
);
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 829)
INSERT INTO Orders
SELECT 10248 + i,
       'C' || substr('000' || (i % 91 + 1), -3),
       strftime('%Y-%m-%d %H:%M:%S', '1994-08-04 15:30:00', '+' || i || ' days', '+' || (i % 7) || ' hours'),
       CASE WHEN i % 10 = 0 THEN NULL ELSE printf('%05d', 10000 + i * 37 % 90000) END,
       round((i * 7919 % 100000) / 100.0, 2),
       'Ship ' || i
FROM n;

CREATE TABLE "Order Details" (
  OrderID INTEGER NOT NULL,
  ProductID INTEGER NOT NULL,
  UnitPrice REAL NOT NULL,
  Quantity INTEGER NOT NULL,
  Discount REAL NOT NULL
);
CREATE UNIQUE INDEX "Order Details Key" ON "Order Details" (OrderID, ProductID);
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 829),
     p(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM p WHERE j < 3)
INSERT INTO "Order Details"
SELECT 10248 + i, (i * 13 + j * 17) % 77 + 1, round(((i + j) * 311 % 5000) / 100.0 + 1, 2),
       (i + j) % 40 + 1, CASE WHEN j = 2 THEN 0.05 ELSE 0 END
FROM n, p;

CREATE TABLE "Umsätze" (
  Kunde TEXT,
  Betrag REAL,
  Monat TEXT
);
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 23)
INSERT INTO "Umsätze"
SELECT 'C' || substr('000' || (i % 6 + 1), -3), round(i % 4 * 100.25, 2), '1995-' || substr('0' || (i % 3 + 1), -2)
FROM n;
