"""The model kinds and their dependencies (no heavy imports: the sweep driver's flag checks use these)."""

KINDS = ("baseline", "monkey_predictor", "oracle", "oracle_readout", "mtl_monkey", "mtl_oracle", "mtl_shuffled")
UPSTREAM = {"mtl_monkey": "monkey_predictor", "mtl_shuffled": "monkey_predictor",
            "oracle_readout": "oracle", "mtl_oracle": "oracle_readout"}
CLASSIFIERS = ("baseline", "oracle", "mtl_monkey", "mtl_oracle", "mtl_shuffled")
