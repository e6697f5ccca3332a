"""Makes a deeper copy of a torch.onnx BERT-style export by repeating its last encoder layer.

    deepen.py MODEL.onnx OUT.onnx LAYERS

The nodes of the last layer (named `.../layer.<k>/...` by the exporter) are copied until the
model has LAYERS layers, each copy reading the previous one's output and sharing the last
layer's weights; the node count grows like a real deeper model's. Used to time the optimiser
on a BERT-base-sized graph (12 layers) without torch: `tcc compile OUT.onnx --emit ir
--explain`. Needs the `onnx` package.
"""
import re
import sys

import onnx


def main():
    src, dst, layers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    m = onnx.load(src)
    g = m.graph
    idx = sorted({int(x) for n in g.node for x in re.findall(r"layer\.(\d+)/", n.name)})
    last = idx[-1]
    tag = f"layer.{last}/"
    body = [n for n in g.node if tag in n.name]
    produced = {o for n in body for o in n.output}
    consumed_inside = {i for n in body for i in n.input}
    # The layer's input: a tensor it reads that no node of it makes and that is not a weight.
    weights = {i.name for i in g.initializer}
    ins = [i for i in consumed_inside if i not in produced and i not in weights and i]
    # The layer's output: what nodes after it (or the graph outputs) read.
    after = [n for n in g.node if n not in body]
    read_after = {i for n in after for i in n.input} | {o.name for o in g.output}
    outs = [o for o in produced if o in read_after]
    assert len(outs) == 1, f"the last layer has outputs {outs}"
    hidden_out = outs[0]
    # The hidden-state input is the one of the previous layer's outputs; others (masks) stay.
    prev_tag = f"layer.{last - 1}/"
    hidden_in = [i for i in ins if prev_tag in i or "embeddings" in i]
    assert len(hidden_in) == 1, f"cannot tell the layer's hidden input among {ins}"
    hidden_in = hidden_in[0]
    pos = max(i for i, n in enumerate(g.node) if tag in n.name) + 1
    current = hidden_out
    new_nodes = []
    for k in range(last + 1, layers):
        rename = {o: f"{o}__copy{k}" for o in produced}
        for n in body:
            c = onnx.NodeProto()
            c.CopyFrom(n)
            c.name = n.name.replace(tag, f"layer.{k}/")
            for j, i in enumerate(c.input):
                if i == hidden_in:
                    c.input[j] = current
                elif i in rename:
                    c.input[j] = rename[i]
            for j, o in enumerate(c.output):
                c.output[j] = rename[o]
            new_nodes.append(c)
        current = rename[hidden_out]
    for n in after:
        for j, i in enumerate(n.input):
            if i == hidden_out:
                n.input[j] = current
    for o in g.output:
        if o.name == hidden_out:
            o.name = current
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(nodes[:pos] + new_nodes + nodes[pos:])
    onnx.save(m, dst)
    print(f"{dst}: {layers} layers, {len(g.node)} nodes")


if __name__ == "__main__":
    main()
