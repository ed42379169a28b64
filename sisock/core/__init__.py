"""The pure core of sisock: protocol rules, wire shapes, the reply budget,
downsampling, in-memory timelines and the data-core contract.

Nothing here imports a reactor, a network library or h5py: numpy only.
"""
