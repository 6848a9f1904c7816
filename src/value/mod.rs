//! Value types shared by every layer (sources, the API model, HTTP); a leaf: it imports
//! nothing else from the crate.

pub mod date;
