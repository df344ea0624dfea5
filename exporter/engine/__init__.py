"""Stage 3, engine: one evaluation, the scheduler, the running exporter (configs, reloads), sharding."""
