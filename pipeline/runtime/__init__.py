"""The worker's runtime: the Faust app, the batch loop, the checkpoint (durability order) and the retry policy."""
