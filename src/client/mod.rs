//! The ringraft client library. Built by issue 7.
