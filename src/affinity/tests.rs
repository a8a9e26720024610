//! Tests of the affinity module, by part. The clock is passed in: no test
//! sleeps.

mod decide;
mod extract;
mod fuzz;
mod table;
