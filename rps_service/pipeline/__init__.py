"""The pipeline: distributor, queue workers, leases and the fleet job runner."""
