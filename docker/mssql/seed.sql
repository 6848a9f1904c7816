-- The demo shop database in T-SQL, for SQL Server 2008 and later (docker/compose.yml runs it
-- with sqlcmd -v PORTICO_PASSWORD=...). Legacy on purpose: CHAR keys, dates as integers,
-- money, a varchar column in code page 850 written by a DOS program, a rowversion on JOBHDR
-- and Change Tracking on CUSTMAST for Portico's change feeds.
SET NOCOUNT ON;
IF DB_ID('SHOP') IS NULL CREATE DATABASE SHOP;
GO
ALTER DATABASE SHOP SET ALLOW_SNAPSHOT_ISOLATION ON;
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_databases WHERE database_id = DB_ID('SHOP'))
    ALTER DATABASE SHOP SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON);
GO
USE SHOP;
GO
IF OBJECT_ID('dbo.JOBHDR') IS NOT NULL DROP TABLE dbo.JOBHDR;
IF OBJECT_ID('dbo.CUSTMAST') IS NOT NULL DROP TABLE dbo.CUSTMAST;
GO
CREATE TABLE dbo.CUSTMAST (
    CUST_NO    CHAR(8)      NOT NULL PRIMARY KEY,
    CUST_NAME  VARCHAR(30)  COLLATE SQL_Latin1_General_CP1_CI_AS NOT NULL,
    CITY       NVARCHAR(20) NULL,
    ACTIVE     BIT          NOT NULL,
    CREDIT_LIM MONEY        NULL,
    OPENED_DT  DATE         NOT NULL
);
ALTER TABLE dbo.CUSTMAST ENABLE CHANGE_TRACKING;

CREATE TABLE dbo.JOBHDR (
    JOB_NO    CHAR(10)         NOT NULL PRIMARY KEY,
    CUST_NO   CHAR(8)          NOT NULL REFERENCES dbo.CUSTMAST (CUST_NO),
    DESCR     VARCHAR(60)      COLLATE SQL_Latin1_General_CP850_CI_AS NULL,
    STATUS    CHAR(1)          NOT NULL,
    ORDER_DT  INT              NOT NULL,
    DUE_DT    DATE             NULL,
    QUOTE_AMT MONEY            NULL,
    RUSH      BIT              NOT NULL,
    TRACK_ID  UNIQUEIDENTIFIER NOT NULL DEFAULT NEWID(),
    LAST_UPD  DATETIME         NOT NULL DEFAULT GETDATE(),
    RV        ROWVERSION
);
CREATE INDEX JOBHDR_CUST ON dbo.JOBHDR (CUST_NO);
GO
INSERT INTO dbo.CUSTMAST VALUES
    ('C00001', 'Acme Tool & Die', N'Springfield', 1, 25000.00, '1996-03-01'),
    ('C00002', 'Café Machinery', N'Lyon', 1, 12500.50, '1997-07-15'),
    ('C00003', 'Müller Präzision', N'Stuttgart', 0, NULL, '1998-11-30');

INSERT INTO dbo.JOBHDR (JOB_NO, CUST_NO, DESCR, STATUS, ORDER_DT, DUE_DT, QUOTE_AMT, RUSH) VALUES
    ('J000001', 'C00001', 'Bracket, 4 holes', 'O', 20240105, '2024-02-01', 1250.00, 0),
    ('J000002', 'C00002', 'Façade clips (Größe 3)', 'H', 20240110, NULL, 980.5, 1),
    ('J000003', 'C00002', 'Gear housing', 'C', 20231201, '2024-01-15', 922337203685477.5807, 0),
    ('J000004', 'C00003', 'Shaft, 40 mm', 'O', 20240201, '2024-03-01', NULL, 0);
GO
IF NOT EXISTS (SELECT 1 FROM sys.server_principals WHERE name = 'portico_ro')
    CREATE LOGIN portico_ro WITH PASSWORD = '$(PORTICO_PASSWORD)', CHECK_POLICY = OFF;
GO
IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = 'portico_ro')
    CREATE USER portico_ro FOR LOGIN portico_ro;
ALTER ROLE db_datareader ADD MEMBER portico_ro;
GRANT VIEW CHANGE TRACKING ON dbo.CUSTMAST TO portico_ro;
GO
