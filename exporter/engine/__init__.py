"""The engine: one evaluation, the scheduler, the running exporter (configs, reloads), sharding."""
