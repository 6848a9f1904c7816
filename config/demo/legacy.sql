-- The bundled demo: the job-tracking database of a small machine shop, written in 1996 and
-- still in use. Everything a legacy database does to its data is here on purpose:
-- CHAR-padded keys, dates as CHAR(8) YYYYMMDD, as integers, as AS/400 CYYMMDD and as
-- MM/DD/YYYY text, '00000000' and 0 meaning "no date", single-letter codes, Y/N flags,
-- DECIMAL money, and names stored as Windows-1252 bytes.
-- Build it with: sqlite3 config/demo/legacy.db < config/demo/legacy.sql

PRAGMA journal_mode = WAL;
BEGIN;

CREATE TABLE CUSTMAST (
    CUST_NO    CHAR(8)       NOT NULL PRIMARY KEY,   -- 'C00001  '
    CUST_NAME  CHAR(30)      NOT NULL,               -- CP1252 bytes, blank padded
    CITY       CHAR(20),
    ACTIVE     CHAR(1)       NOT NULL,               -- Y / N
    CREDIT_LIM DECIMAL(11,2),
    OPENED_DT  CHAR(8)       NOT NULL                -- YYYYMMDD
);

CREATE TABLE JOBHDR (
    JOB_NO     CHAR(10)      NOT NULL PRIMARY KEY,   -- 'J000001   '
    CUST_NO    CHAR(8)       NOT NULL,
    DESCR      VARCHAR(60),                          -- CP1252 bytes
    STATUS     CHAR(1)       NOT NULL,               -- O open, H held, C closed, X cancelled
    PRIORITY   INTEGER,
    ORDER_DT   INTEGER       NOT NULL,               -- YYYYMMDD as a number
    DUE_DT     CHAR(8)       NOT NULL,               -- YYYYMMDD, '00000000' = not scheduled
    SHIP_DT    NUMERIC(7,0)  NOT NULL,               -- AS/400 CYYMMDD, 0 = not shipped
    QUOTE_AMT  DECIMAL(13,2),
    RUSH       CHAR(1)       NOT NULL,               -- Y / N
    LAST_UPD   TIMESTAMP     NOT NULL                -- written by every program that touches the row
);
CREATE INDEX JOBHDR_CUST ON JOBHDR (CUST_NO);
CREATE INDEX JOBHDR_DUE ON JOBHDR (DUE_DT);
CREATE INDEX JOBHDR_STATUS ON JOBHDR (STATUS);
CREATE INDEX JOBHDR_UPD ON JOBHDR (LAST_UPD);

CREATE TABLE JOBOPS (
    JOB_NO     CHAR(10)      NOT NULL,
    OP_SEQ     INTEGER       NOT NULL,               -- 10, 20, 30 ...
    WORK_CTR   CHAR(6)       NOT NULL,
    OP_DESC    VARCHAR(40),
    STD_HRS    DECIMAL(7,2),
    DONE_FLAG  CHAR(1)       NOT NULL,               -- Y / N
    DONE_DT    VARCHAR(10)   NOT NULL,               -- MM/DD/YYYY, blank until done
    PRIMARY KEY (JOB_NO, OP_SEQ)
);

-- 200 customers. Names carry Windows-1252 bytes: é = E9, ü = FC, ö = F6, ’ = 92.
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200),
base(k, name) AS (VALUES
    (0, 'Acme Tool & Die'),
    (1, 'Caf' || CAST(X'E9' AS TEXT) || ' Machinery'),
    (2, 'M' || CAST(X'FC' AS TEXT) || 'ller Pr' || CAST(X'E4' AS TEXT) || 'zision'),
    (3, 'Northside Fabrication'),
    (4, 'O' || CAST(X'92' AS TEXT) || 'Brien Hydraulics'),
    (5, 'Lakeshore Marine'),
    (6, 'J' || CAST(X'F6' AS TEXT) || 'nsson Verktyg'),
    (7, 'Summit Aerospace'),
    (8, 'Riverbend Pump Co'),
    (9, 'Zephyr Controls')),
city(k, name) AS (VALUES (0, 'Dayton'), (1, 'Toledo'), (2, 'Stuttgart'), (3, 'Akron'), (4, 'Cork'),
    (5, 'Erie'), (6, 'Malmo'), (7, 'Wichita'), (8, 'Peoria'), (9, 'Fresno'))
INSERT INTO CUSTMAST
SELECT printf('%-8s', printf('C%05d', i)),
       printf('%-30s', b.name || CASE WHEN i > 10 THEN ' ' || (i / 10) ELSE '' END),
       printf('%-20s', c.name),
       CASE WHEN i % 13 = 0 THEN 'N' ELSE 'Y' END,
       CASE WHEN i % 17 = 0 THEN NULL ELSE ((i * 7919) % 500) * 100 + 5000 END,
       strftime('%Y%m%d', julianday('1996-03-01') + (i * 11) % 700)
FROM n JOIN base b ON b.k = i % 10 JOIN city c ON c.k = (i * 3) % 10;

-- 10,000 jobs over thirty years.
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000),
job AS (
    SELECT i,
           julianday('1996-06-01') + (i * 1.1) AS ordered,
           CASE i % 10 WHEN 4 THEN 'O' WHEN 5 THEN 'O' WHEN 6 THEN 'O' WHEN 8 THEN 'O'
                       WHEN 7 THEN 'H' WHEN 9 THEN 'X' ELSE 'C' END AS status
    FROM n),
part(k, name) AS (VALUES (0, 'Flange'), (1, 'Shaft'), (2, 'Bracket'), (3, 'Housing'),
    (4, 'Gear blank'), (5, 'Manifold'), (6, 'Bushing'), (7, 'Impeller'))
INSERT INTO JOBHDR
SELECT printf('%-10s', printf('J%06d', i)),
       printf('%-8s', printf('C%05d', 1 + (i * 7) % 200)),
       p.name || ' ' || (1 + i % 40) || CASE WHEN i % 25 = 0 THEN ' ' || CAST(X'96' AS TEXT) || ' r' || CAST(X'E9' AS TEXT) || 'vision B' ELSE '' END,
       status,
       CASE WHEN i % 11 = 0 THEN NULL ELSE 1 + (i * 31) % 5 END,
       CAST(strftime('%Y%m%d', ordered) AS INTEGER),
       CASE WHEN i % 33 = 0 THEN '00000000' ELSE strftime('%Y%m%d', ordered + 14 + (i * 13) % 60) END,
       CASE WHEN status = 'C'
            THEN (CAST(strftime('%Y', ordered + 20) AS INTEGER) - 1900) / 100 * 1000000
                 + CAST(strftime('%Y', ordered + 20) AS INTEGER) % 100 * 10000
                 + CAST(strftime('%m%d', ordered + 20) AS INTEGER)
            ELSE 0 END,
       CASE WHEN i % 19 = 0 THEN NULL ELSE ((i * 104729) % 9000000) / 100.0 + 150 END,
       CASE WHEN i % 9 = 0 THEN 'Y' ELSE 'N' END,
       strftime('%Y-%m-%d %H:%M:%S', ordered + 3 + (i % 24) / 24.0)
FROM job JOIN part p ON p.k = i % 8;

-- Three or four operations per job.
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000),
seq(s) AS (VALUES (10), (20), (30), (40)),
ctr(k, code, what) AS (VALUES (0, 'SAW', 'Cut stock'), (1, 'LATHE', 'Turn'), (2, 'MILL', 'Mill'),
    (3, 'INSP', 'Inspect'))
INSERT INTO JOBOPS
SELECT printf('%-10s', printf('J%06d', i)),
       s,
       printf('%-6s', c.code),
       c.what || ' per drawing',
       ((i * s) % 800) / 100.0 + 0.25,
       CASE WHEN h.STATUS = 'C' OR (h.STATUS = 'O' AND s = 10) THEN 'Y' ELSE 'N' END,
       CASE WHEN h.STATUS = 'C' OR (h.STATUS = 'O' AND s = 10)
            THEN strftime('%m/%d/%Y', julianday('1996-06-01') + (i * 1.1) + s / 10)
            ELSE '' END
FROM n JOIN seq ON s < 40 OR i % 3 = 0
       JOIN ctr c ON c.k = (s / 10 - 1)
       JOIN JOBHDR h ON h.JOB_NO = printf('%-10s', printf('J%06d', i));

COMMIT;
