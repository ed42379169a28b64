"""Modbus TCP instrument data node: config, decode, expr, poller, simulator."""
