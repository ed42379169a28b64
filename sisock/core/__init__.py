"""The pure core of sisock: protocol rules and the one result type, wire
shapes, the registry of encoders, the reply budget, downsampling, in-memory
timelines and the data-core contract.

Nothing here imports a reactor, a network library or h5py: numpy only.
"""
