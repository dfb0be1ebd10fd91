"""Runtime: working copies, the shrunk twin, the weights snapshot, devices and their memory, trial processes on
a GPU, and the ranks of a distributed run. Imports capture, facts and core."""
