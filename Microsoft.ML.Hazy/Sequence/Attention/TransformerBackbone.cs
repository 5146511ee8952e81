using Microsoft.ML.Hazy.Kernels.Attention;
using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Layers.Monarch;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Sequence.Attention;

/// <summary>Options of the Transformer backbone of <c>SequenceTrainer</c>.</summary>
public sealed class TransformerOptions
{
    /// <summary>Attention heads per block; the model dimension must be a multiple of it, with an even head size.</summary>
    public int NumberOfHeads { get; set; } = 4;

    /// <summary>Width of each block's feed-forward layer as a multiple of the model dimension.</summary>
    public int FeedForwardMultiplier { get; set; } = 2;

    internal void Validate(int width)
    {
        if (NumberOfHeads <= 0 || width % NumberOfHeads != 0 || (width / NumberOfHeads) % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(NumberOfHeads), NumberOfHeads,
                $"TransformerOptions.NumberOfHeads must divide the model dimension {width} into heads of even size.");
        if (FeedForwardMultiplier <= 0)
            throw new ArgumentOutOfRangeException(nameof(FeedForwardMultiplier), FeedForwardMultiplier, "TransformerOptions.FeedForwardMultiplier must be positive.");
    }
}

/// <summary>
/// The Transformer backbone: each block is multi-head self-attention (FlashAttention on the CPU, rotary
/// position embeddings, which depend only on relative offsets and so suit long sequences) and then a GELU
/// feed-forward layer; the network adds the residual blocks and normalisation (pre-norm by choice).
/// Attention is causal unless the trainer is bidirectional. With Monarch blocks every projection is a <see cref="MonarchLinear"/>.
/// </summary>
internal sealed class TransformerBackbone : ISequenceBackboneFactory
{
    private readonly TransformerOptions _options;

    public TransformerBackbone(TransformerOptions options) => _options = options;

    /// <summary>The options the layers are built with.</summary>
    public TransformerOptions Options => _options;

    public IReadOnlyList<ParameterGroupOptions> LayerParameterGroups => Array.Empty<ParameterGroupOptions>();

    /// <remarks>
    /// Attention 17H: q, k, v projections and their per-head copies (6H), the rotary products, sums and concatenation of
    /// q and k (8H), the output, its transposed copy and projection (3H); FlashAttention keeps only a log-sum-exp per head
    /// and step, no L × L scores. Feed-forward (4m + 1)H with m the multiplier: the up projection, GELU, dropout mask and
    /// output (4mH), the down projection (H).
    /// </remarks>
    public IReadOnlyList<double> TrainingValuesPerStep(SequenceNetworkShape shape) =>
        new[] { 17.0 * shape.Width, (4.0 * _options.FeedForwardMultiplier + 1) * shape.Width };

    public IReadOnlyList<nn.Module<Tensor, Tensor>> CreateLayers(int index, SequenceNetworkShape shape)
    {
        _options.Validate(shape.Width);
        return new nn.Module<Tensor, Tensor>[]
        {
            new SelfAttentionLayer(shape.Width, _options.NumberOfHeads, shape.Dropout, causal: !shape.Bidirectional, shape.MonarchBlocks),
            new FeedForwardLayer(shape.Width, _options.FeedForwardMultiplier * shape.Width, shape.Dropout, shape.MonarchBlocks),
        };
    }
}

/// <summary>Multi-head self-attention with rotary position embeddings: softmax(q kᵀ / √d) v per head.</summary>
internal sealed class SelfAttentionLayer : nn.Module<Tensor, Tensor>, ISequenceLayer, ISeededModule
{
    private readonly nn.Module<Tensor, Tensor> q_proj, k_proj, v_proj, out_proj;
    private readonly int _heads, _headSize;
    private readonly bool _causal;
    private readonly double _dropout;

    public SelfAttentionLayer(int width, int heads, double dropout, bool causal, int monarchBlocks = 0) : base(nameof(SelfAttentionLayer))
    {
        q_proj = MonarchLinear.OrDense(width, width, monarchBlocks);
        k_proj = MonarchLinear.OrDense(width, width, monarchBlocks);
        v_proj = MonarchLinear.OrDense(width, width, monarchBlocks);
        out_proj = MonarchLinear.OrDense(width, width, monarchBlocks);
        _heads = heads;
        _headSize = width / heads;
        _causal = causal;
        _dropout = dropout;
        RegisterComponents();
    }

    public Generator? Generator { get; set; }

    public void ResetParameters(Generator generator)
    {
    }

    public override Tensor forward(Tensor input) => Forward(input, null);

    public Tensor Forward(Tensor input, Tensor? mask)
    {
        long b = input.shape[0], l = input.shape[1];
        Tensor Heads(nn.Module<Tensor, Tensor> proj) => proj.forward(input).view(b, l, _heads, _headSize).transpose(1, 2).contiguous();
        var (cos, sin) = RotaryTables(l, _headSize, input.device);
        var q = Rotate(Heads(q_proj), cos, sin);
        var k = Rotate(Heads(k_proj), cos, sin);
        var v = Heads(v_proj);
        int[]? keyLengths = null;
        if (mask is not null)
        {
            using var lengths = mask.squeeze(-1).sum(1).to(ScalarType.Int32).cpu();
            keyLengths = lengths.data<int>().ToArray();
        }
        var options = new FlashAttentionOptions
        {
            Causal = _causal,
            KeyLengths = keyLengths,
            DropoutProbability = training ? _dropout : 0,
            DropoutSeed = training && _dropout > 0 ? TrainingRandom.NextSeed(Generator) : 0,
        };
        var o = FlashAttention.Apply(q, k, v, options).transpose(1, 2).reshape(b, l, _heads * _headSize);
        return out_proj.forward(o);
    }

    /// <summary>cos and sin of t·θᵢ with θᵢ = 10000^(−2i/d), shape [L, d/2] (rotary embedding, RoFormer).</summary>
    public static (Tensor Cos, Tensor Sin) RotaryTables(long length, int headSize, Device? device = null)
    {
        using var thetaBase = tensor(10000.0);
        using var zero = 0.ToScalar();
        using var one = 1.ToScalar();
        using var two = 2.ToScalar();
        using var size = headSize.ToScalar();
        using var positions = length.ToScalar();
        var inv = pow(thetaBase, arange(zero, size, two, ScalarType.Float64).div(size).neg());
        var angles = outer(arange(zero, positions, one, ScalarType.Float64), inv).to(ScalarType.Float32);
        return (angles.cos().to(device ?? CPU), angles.sin().to(device ?? CPU));
    }

    // (x₁, x₂) ↦ (x₁ cos − x₂ sin, x₁ sin + x₂ cos) on the two halves of each head.
    private static Tensor Rotate(Tensor x, Tensor cos, Tensor sin)
    {
        var halves = x.chunk(2, -1);
        using var one = 1.ToScalar();
        return cat(new[] { halves[0] * cos - halves[1] * sin, (halves[0] * sin).add(halves[1] * cos, one) }, -1);
    }

    public string ExportOnnx(OnnxGraphBuilder g, string input, string? mask, int maxLength)
    {
        int half = _headSize / 2;
        var (cosTable, sinTable) = RotaryTables(maxLength, _headSize);
        var length = g.Node("Unsqueeze", new[] { g.Node("Gather", new[] { g.Node("Shape", new[] { input }), g.Int64s(1) }, OnnxAttribute.Int("axis", 0)), g.Int64s(0) });
        length = g.Node("Reshape", new[] { length, g.Int64s(1) });
        string Rows(string table) => g.Node("Slice", new[] { table, g.Int64s(0), length, g.Int64s(0) });
        var cos = Rows(g.AddInitializer("rope_cos", cosTable));
        var sin = Rows(g.AddInitializer("rope_sin", sinTable));
        cosTable.Dispose();
        sinTable.Dispose();

        string Heads(nn.Module<Tensor, Tensor> proj)
        {
            var y = OnnxModuleExporter.Export(g, proj, input);
            y = g.Node("Reshape", new[] { y, g.Int64s(0, 0, _heads, _headSize) });
            return g.Node("Transpose", new[] { y }, OnnxAttribute.Ints("perm", 0, 2, 1, 3));
        }
        string Rotate(string x)
        {
            var x1 = g.Node("Slice", new[] { x, g.Int64s(0), g.Int64s(half), g.Int64s(-1) });
            var x2 = g.Node("Slice", new[] { x, g.Int64s(half), g.Int64s(_headSize), g.Int64s(-1) });
            var a = g.Node("Sub", new[] { g.Node("Mul", new[] { x1, cos }), g.Node("Mul", new[] { x2, sin }) });
            var b = g.Node("Add", new[] { g.Node("Mul", new[] { x1, sin }), g.Node("Mul", new[] { x2, cos }) });
            return g.Node("Concat", new[] { a, b }, OnnxAttribute.Int("axis", -1));
        }

        var q = Rotate(Heads(q_proj));
        var k = Rotate(Heads(k_proj));
        var v = Heads(v_proj);
        var scores = g.Node("Mul", new[] { g.Node("MatMul", new[] { q, g.Node("Transpose", new[] { k }, OnnxAttribute.Ints("perm", 0, 1, 3, 2)) }), g.Scalar((float)(1 / Math.Sqrt(_headSize))) });
        if (_causal)
        {
            var bias = new float[maxLength * maxLength];
            for (int i = 0; i < maxLength; i++)
                for (int j = i + 1; j < maxLength; j++)
                    bias[i * maxLength + j] = -1e9f;
            var square = g.AddInitializer("causal_bias", bias, maxLength, maxLength);
            var rows = g.Node("Slice", new[] { square, g.Int64s(0, 0), g.Node("Concat", new[] { length, length }, OnnxAttribute.Int("axis", 0)), g.Int64s(0, 1) });
            scores = g.Node("Add", new[] { scores, rows });
        }
        if (mask is not null)
        {
            // mask [B, L, 1] → additive key bias [B, 1, 1, L]: 0 on valid keys, −10⁹ on padding.
            var keys = g.Node("Unsqueeze", new[] { g.Node("Transpose", new[] { mask }, OnnxAttribute.Ints("perm", 0, 2, 1)), g.Int64s(1) });
            scores = g.Node("Add", new[] { scores, g.Node("Mul", new[] { g.Node("Sub", new[] { keys, g.Scalar(1f) }), g.Scalar(1e9f) }) });
        }
        var weights = g.Node("Softmax", new[] { scores }, OnnxAttribute.Int("axis", -1));
        var o = g.Node("Transpose", new[] { g.Node("MatMul", new[] { weights, v }) }, OnnxAttribute.Ints("perm", 0, 2, 1, 3));
        o = g.Node("Reshape", new[] { o, g.Int64s(0, 0, _heads * _headSize) });
        return OnnxModuleExporter.Export(g, out_proj, o);
    }

    public ISequenceLayerStepper? CreateStepper(int batchSize) => null;
}

/// <summary>The position-wise feed-forward layer: W₂ dropout(GELU(W₁ x)).</summary>
internal sealed class FeedForwardLayer : nn.Module<Tensor, Tensor>, ISequenceLayer, ISeededModule
{
    private readonly nn.Module<Tensor, Tensor> up, down;
    private readonly double _dropout;

    public FeedForwardLayer(int width, int hidden, double dropout, int monarchBlocks = 0) : base(nameof(FeedForwardLayer))
    {
        up = MonarchLinear.OrDense(width, hidden, monarchBlocks);
        down = MonarchLinear.OrDense(hidden, width, monarchBlocks);
        _dropout = dropout;
        RegisterComponents();
    }

    public override Tensor forward(Tensor input) => Forward(input, null);

    public Generator? Generator { get; set; }

    public void ResetParameters(Generator generator)
    {
    }

    public Tensor Forward(Tensor input, Tensor? mask)
    {
        var h = nn.functional.gelu(up.forward(input));
        return down.forward(training && _dropout > 0 ? SeededDropout.Apply(h, h.shape, _dropout, Generator) : h);
    }

    public string ExportOnnx(OnnxGraphBuilder g, string input, string? mask, int maxLength)
    {
        var h = OnnxModuleExporter.Gelu(g, OnnxModuleExporter.Export(g, up, input), tanhApproximation: false);
        return OnnxModuleExporter.Export(g, down, h);
    }

    public ISequenceLayerStepper? CreateStepper(int batchSize) => null;
}
