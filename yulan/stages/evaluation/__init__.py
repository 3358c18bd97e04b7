"""The evaluation stage: benchmark data, generation, scoring (answer matching, sandboxed pass@k) and the table."""
