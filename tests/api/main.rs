//! Integration tests: Portico on a free port, real ODBC drivers, real databases.

mod access;
mod audit;
mod auth;
mod cache;
mod changes;
mod cli;
mod client;
mod contract;
mod docs;
mod fixture;
mod harness;
mod idp;
mod layers;
mod mssql;
mod mssql_server;
mod oidc;
mod openapi;
mod outage;
mod retention;
mod roundtrip;
mod security;
mod servers;
mod suite;
mod tds;
mod versions;
mod writes;
