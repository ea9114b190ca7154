"""The suite's scenarios beyond the variant tables: each a function of the running Suite."""
