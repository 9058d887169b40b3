"""Running a job's call: the common runner, and the process kind's fork server and protocol."""
