from dl.nn.conv import Conv, ConvTranspose, SequenceConv, sequence_padding
from dl.nn.pool import avg_pool, max_pool, max_pool_with_argmax, max_unpool, unpool_size
from dl.nn.norm import BatchNorm, SpatialDropout
