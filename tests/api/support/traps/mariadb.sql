-- The trap schema of sqlite.sql, in MariaDB: the same rows.
CREATE TABLE Customers (
  CustomerID varchar(5) PRIMARY KEY,
  `Company Name` varchar(40) NOT NULL,
  `Straße` varchar(60),
  Photo blob
) DEFAULT CHARSET = utf8mb4;
INSERT INTO Customers
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 91)
SELECT CONCAT('C', LPAD(i, 3, '0')), CONCAT('Company ', i), CONCAT('Hauptstraße ', i), x'89504e47'
FROM n;

CREATE TABLE Orders (
  OrderID int PRIMARY KEY,
  CustomerID varchar(5),
  OrderDate varchar(19),
  ShipPostalCode varchar(10),
  Freight float,
  `Ship Name` varchar(40)
) DEFAULT CHARSET = utf8mb4;
INSERT INTO Orders
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 829)
SELECT 10248 + i,
       CONCAT('C', LPAD(i % 91 + 1, 3, '0')),
       DATE_FORMAT(TIMESTAMP '1994-08-04 15:30:00' + INTERVAL i DAY + INTERVAL (i % 7) HOUR, '%Y-%m-%d %H:%i:%s'),
       CASE WHEN i % 10 = 0 THEN NULL ELSE LPAD(10000 + i * 37 % 90000, 5, '0') END,
       ROUND((i * 7919 % 100000) / 100.0, 2),
       CONCAT('Ship ', i)
FROM n;

CREATE TABLE `Order Details` (
  OrderID int NOT NULL,
  ProductID int NOT NULL,
  UnitPrice float NOT NULL,
  Quantity smallint NOT NULL,
  Discount float NOT NULL,
  UNIQUE KEY `Order Details Key` (OrderID, ProductID)
) DEFAULT CHARSET = utf8mb4;
INSERT INTO `Order Details`
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 829),
     p(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM p WHERE j < 3)
SELECT 10248 + i, (i * 13 + j * 17) % 77 + 1, ROUND(((i + j) * 311 % 5000) / 100.0 + 1, 2),
       (i + j) % 40 + 1, CASE WHEN j = 2 THEN 0.05 ELSE 0 END
FROM n, p;

CREATE TABLE `Umsätze` (
  Kunde varchar(5),
  Betrag float,
  Monat varchar(7)
) DEFAULT CHARSET = utf8mb4;
INSERT INTO `Umsätze`
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 23)
SELECT CONCAT('C', LPAD(i % 6 + 1, 3, '0')), ROUND(i % 4 * 100.25, 2), CONCAT('1995-', LPAD(i % 3 + 1, 2, '0'))
FROM n;
