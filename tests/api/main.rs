//! Integration tests: Portico on a free port, real ODBC drivers, real databases.

mod cache;
mod cli;
mod fixture;
mod harness;
mod outage;
mod servers;
mod suite;
