"""One turn from question to answer, a small module per stage, and the scheduler that runs turns."""
