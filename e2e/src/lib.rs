//! Harnesses that run openefs against real peers nobody here wrote.
