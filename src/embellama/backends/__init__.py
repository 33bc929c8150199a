"""What runs packed batches through llama.cpp: in this process, or in supervised workers.

The scheduler talks to one small interface (`base.Backend`); the library uses
`InProcessBackend`, the server `WorkerPool`. Backends run exactly the batch they are
given: packing, queueing and retries are the scheduler's, pooling policy the job's.
"""
