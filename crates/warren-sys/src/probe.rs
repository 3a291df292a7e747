//! Attempts of hostile system calls for the escape probe (placeholder until written).
