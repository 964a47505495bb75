"""A Keras-like ``model.summary()``: each layer of the model ``options``
describe, its output shape and parameter count (``lstm.py --summary``)."""
import dataclasses
import os

import imdb
from sentiment.model.variants import lstm_prefixes, pooled_dim, trainable_params


def layer_table(options):
    """The model's layers: ``(name, kind, output_shape, parameter_names)``.

    Shapes are time first: ``T`` time steps (``pad_to`` when set), ``N``
    reviews.
    """
    T = str(options.pad_to) if options.pad_to else "T"
    dirs = 2 if options.bidirectional else 1
    rows = [("embedding", "Embedding", (T, "N", options.emb_dim), ["Wemb"])]
    if options.bigram_buckets:
        rows.append(("bigrams", "+ hashed bigram embedding", (T, "N", options.emb_dim),
                     ["Wbigram"]))
    if options.word_dropout:
        rows.append(("word_dropout", "Word dropout %g" % options.word_dropout,
                     (T, "N", options.emb_dim), []))
    if options.conv_filters:
        rows.append(("conv", "Conv1D w=%d, relu" % options.conv_width,
                     (T, "N", options.conv_filters), ["conv_W", "conv_b"]))
        if options.pool > 1:
            T = (str(-(-int(T) // options.pool)) if T.isdigit()
                 else "ceil(T/%d)" % options.pool)
            rows.append(("pool", "MaxPool1D %d" % options.pool,
                         (T, "N", options.conv_filters), []))
    for layer in lstm_prefixes(options):
        for prefix in layer:
            kind = "LSTM, backward" if prefix.endswith("_rev") else "LSTM"
            rows.append((prefix, kind, (T, "N", options.dim_proj),
                         ["%s_%s" % (prefix, k) for k in "WUb"]))
        if dirs == 2:
            rows.append(("concat", "Concatenate", (T, "N", dirs * options.dim_proj), []))
    pooling = "Mean+max" if options.pooling == "meanmax" else options.pooling.capitalize()
    if options.pool_embeddings:
        rows.append(("pooling", "%s over real steps" % pooling,
                     ("N", pooled_dim(options) - options.emb_dim), []))
        rows.append(("bag", "+ mean of the embeddings", ("N", pooled_dim(options)), []))
    else:
        rows.append(("pooling", "%s over real steps" % pooling, ("N", pooled_dim(options)), []))
    if options.use_dropout:
        rows.append(("dropout", "Dropout 0.5", ("N", pooled_dim(options)), []))
    rows.append(("classifier", "Dense, softmax", ("N", options.ydim), ["U", "b"]))
    return rows


def model_summary(options, params):
    """A Keras-like ``model.summary()``: each layer, its output shape and
    parameter count, then the totals (of the arrays in ``params``)."""
    rows = layer_table(options)
    named = [name for row in rows for name in row[3]]
    assert sorted(named) == sorted(params), "layer_table misses parameters"
    frozen = set(params) - set(trainable_params(params, options))
    lines = ["%-14s %-26s %-22s %12s" % ("Layer", "Type", "Output shape", "Param #")]
    lines.append("=" * len(lines[0]))
    for name, kind, shape, names in rows:
        count = sum(params[k].size for k in names)
        lines.append("%-14s %-26s %-22s %12s" % (
            name, kind, "(%s)" % ", ".join(map(str, shape)), "{:,}".format(count)))
    lines.append("=" * len(lines[0]))
    total = sum(v.size for v in params.values())
    fixed = sum(params[k].size for k in frozen)
    lines += ["Total params: {:,}".format(total),
              "Trainable params: {:,}".format(total - fixed),
              "Non-trainable params: {:,}".format(fixed)]
    return "\n".join(lines)


def print_summary(options, draw, out=None):
    """``lstm.py --summary``: the table of the model ``options`` describe, its
    parameters drawn by ``draw(options)`` (``ydim`` from the dataset when it is
    there, else 2), without training."""
    ydim = options.ydim
    if not ydim:
        if os.path.exists(options.dataset):
            train, _ = imdb.load_dataset_file(options.dataset)
            ydim = int(max(train[1])) + 1
        else:
            ydim = 2
            print("(%s not found: 2 classes assumed)" % options.dataset, file=out)
    options = dataclasses.replace(options, ydim=ydim)
    print(model_summary(options, draw(options)), file=out)
