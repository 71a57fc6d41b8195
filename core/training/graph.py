"""The model kinds and their dependencies (no heavy imports: the sweep driver's flag checks use these)."""

# Safarani et al. 2021: multi-task co-training (the paper's Table 1)
MTL_FAMILY = ("baseline", "monkey_predictor", "oracle", "oracle_readout", "mtl_monkey", "mtl_oracle", "mtl_shuffled")
# Li et al. 2019: representational-similarity regularisation, with its shuffled and pixel controls
SIM_FAMILY = ("baseline", "monkey_predictor", "sim_monkey", "sim_shuffled", "sim_pixel")
FAMILIES = {"mtl": MTL_FAMILY, "similarity": SIM_FAMILY,
            "both": MTL_FAMILY + ("sim_monkey", "sim_shuffled", "sim_pixel")}
KINDS = FAMILIES["both"]
UPSTREAM = {"mtl_monkey": "monkey_predictor", "mtl_shuffled": "monkey_predictor",
            "oracle_readout": "oracle", "mtl_oracle": "oracle_readout",
            "sim_monkey": "monkey_predictor", "sim_shuffled": "monkey_predictor"}
CLASSIFIERS = ("baseline", "oracle", "mtl_monkey", "mtl_oracle", "mtl_shuffled", "sim_monkey", "sim_shuffled", "sim_pixel")
SIM_KINDS = ("sim_monkey", "sim_shuffled", "sim_pixel")   # swept over alpha x seed
