//! Portico: versioned, documented REST in front of legacy SQL Server and ODBC databases.

#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod cache;
pub mod catalog;
pub mod changes;
pub mod check;
pub mod config;
pub mod http;
pub mod introspect;
pub mod openapi;
pub mod problem_kind;
pub mod source;
pub mod state;
pub mod telemetry;
pub mod value;
pub mod webhooks;
