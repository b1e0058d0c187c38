# A larger model for a GPU (or a patient CPU): train.py config/small.py --key=value ...
block_size = 128
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.1
eval_interval = 250
log_interval = 25
