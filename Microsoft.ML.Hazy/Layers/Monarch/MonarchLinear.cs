using Microsoft.ML.Hazy.Kernels;
using Microsoft.ML.Hazy.Kernels.Monarch;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Layers.Monarch;

/// <summary>
/// A linear layer whose weight is a Monarch matrix M = P L Pᵀ R (Dao et al., ICML 2022): two block-diagonal
/// factors <see cref="BlockDiagonal1"/> (R) and <see cref="BlockDiagonal2"/> (L) with <c>nblocks</c> blocks
/// each, laid out exactly as <c>blkdiag1</c>/<c>blkdiag2</c> of HazyResearch/fly's <c>MonarchLinear</c>, so
/// weights map one-to-one. Inputs are zero-padded to a multiple of <c>nblocks</c> and outputs truncated to
/// <c>outFeatures</c>. Square layers of width n with nblocks = √n hold 2n√n weights instead of n².
/// </summary>
public sealed class MonarchLinear : nn.Module<Tensor, Tensor>, IOnnxExportable, ISeededModule
{
    private readonly Parameter blkdiag1;
    private readonly Parameter blkdiag2;
    private readonly Parameter? bias;

    /// <summary>Creates the layer with per-block Kaiming-uniform weights, as the reference initialises them.</summary>
    /// <param name="inFeatures">Input width.</param>
    /// <param name="outFeatures">Output width.</param>
    /// <param name="nblocks">Blocks of each block-diagonal factor (the reference's default is 4).</param>
    /// <param name="hasBias">Add a learned bias.</param>
    public MonarchLinear(int inFeatures, int outFeatures, int nblocks = 4, bool hasBias = true) : base(nameof(MonarchLinear))
    {
        if (inFeatures <= 0 || outFeatures <= 0)
            throw new ArgumentOutOfRangeException(nameof(inFeatures), $"MonarchLinear needs positive sizes; got {inFeatures} → {outFeatures}.");
        if (nblocks <= 0 || nblocks > Math.Min(inFeatures, outFeatures))
            throw new ArgumentOutOfRangeException(nameof(nblocks), nblocks, $"nblocks must be within [1, {Math.Min(inFeatures, outFeatures)}] for a {inFeatures} → {outFeatures} layer.");
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Blocks = nblocks;
        int inBlock = (inFeatures + nblocks - 1) / nblocks;
        int outBlock = (outFeatures + nblocks - 1) / nblocks;
        InFeaturesExtended = inBlock * nblocks;
        OutFeaturesExtended = outBlock * nblocks;
        bool widening = InFeaturesExtended < OutFeaturesExtended;
        blkdiag1 = nn.Parameter(empty(nblocks, widening ? inBlock : outBlock, inBlock));
        blkdiag2 = nn.Parameter(empty(nblocks, outBlock, widening ? inBlock : outBlock));
        if (hasBias)
            bias = nn.Parameter(empty(outFeatures));
        ResetParameters();
        RegisterComponents();
    }

    /// <summary>Input width.</summary>
    public int InFeatures { get; }

    /// <summary>Output width.</summary>
    public int OutFeatures { get; }

    /// <summary>Blocks of each block-diagonal factor.</summary>
    public int Blocks { get; }

    /// <summary>The input width after zero-padding to a multiple of <see cref="Blocks"/>.</summary>
    public int InFeaturesExtended { get; }

    /// <summary>The output width before truncation to <see cref="OutFeatures"/>.</summary>
    public int OutFeaturesExtended { get; }

    /// <summary>The first factor R, shape (nblocks, q, in/nblocks): the reference's <c>blkdiag1</c>.</summary>
    public Parameter BlockDiagonal1 => blkdiag1;

    /// <summary>The second factor L, shape (nblocks, out/nblocks, q): the reference's <c>blkdiag2</c>.</summary>
    public Parameter BlockDiagonal2 => blkdiag2;

    /// <summary>The bias, or null.</summary>
    public Parameter? Bias => bias;

    /// <summary>
    /// Multiply through the kernel registry's provider (the fused CPU kernel on float32 CPU tensors; default) rather
    /// than the reference's two <c>bmm</c> calls. Both compute the same function; the bmm path runs on any device and dtype.
    /// </summary>
    public bool UseFusedKernel { get; set; } = true;

    /// <summary>The Monarch kernels to use when <see cref="UseFusedKernel"/> is on; null (default) lets the <see cref="KernelRegistry"/> choose.</summary>
    internal IMonarchKernels? Kernels { get; set; }

    /// <summary>Weights stored by the layer (both factors and the bias).</summary>
    public long ParameterCount => blkdiag1.numel() + blkdiag2.numel() + (bias?.numel() ?? 0);

    /// <summary>Re-draws the weights: each factor uniform(±1/√(block fan-in)), the bias uniform(±1/√out) as in the reference.</summary>
    public void ResetParameters() => ResetParameters(null);

    void ISeededModule.ResetParameters(Generator generator) => ResetParameters(generator);

    Generator? ISeededModule.Generator { get => null; set { } }

    private void ResetParameters(Generator? generator)
    {
        using var _ = no_grad();
        foreach (var w in new[] { blkdiag1, blkdiag2 })
        {
            double bound = 1.0 / Math.Sqrt(w.shape[^1]);
            w.uniform_(-bound, bound, generator);
        }
        if (bias is not null)
        {
            double bound = 1.0 / Math.Sqrt(OutFeatures);
            bias.uniform_(-bound, bound, generator);
        }
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        if (input.shape.Length == 0 || input.shape[^1] != InFeatures)
            throw new ArgumentException($"MonarchLinear expects inputs whose last axis has {InFeatures} values; got shape [{string.Join(", ", input.shape)}].", nameof(input));
        using var scope = NewDisposeScope();
        var padded = InFeaturesExtended == InFeatures ? input : nn.functional.pad(input, new long[] { 0, InFeaturesExtended - InFeatures });
        var y = UseFusedKernel ? MonarchMultiply.Multiply(padded, blkdiag1, blkdiag2, Kernels) : MonarchMultiply.Bmm(padded, blkdiag1, blkdiag2);
        if (OutFeaturesExtended != OutFeatures)
            y = y.narrow(-1, 0, OutFeatures);
        if (bias is not null)
        {
            // add(Tensor) would create a hidden alpha Scalar left to the finalizer (see ParameterOptimizer).
            using var one = 1.ToScalar();
            y = y.add(bias, one);
        }
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The linear map of a layer with a Monarch option: <c>nn.Linear</c> when <paramref name="nblocks"/> is 0, else a
    /// MonarchLinear with <paramref name="nblocks"/> blocks capped at the smaller width. Export either through
    /// <see cref="OnnxModuleExporter.Export"/>.
    /// </summary>
    internal static nn.Module<Tensor, Tensor> OrDense(int inFeatures, int outFeatures, int nblocks) => nblocks > 0
        ? new MonarchLinear(inFeatures, outFeatures, Math.Min(nblocks, Math.Min(inFeatures, outFeatures)))
        : nn.Linear(inFeatures, outFeatures);

    /// <summary>The dense weight W, shape (out, in), with forward(x) = x Wᵀ + b exactly (up to rounding).</summary>
    public Tensor ToDense()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var eye = torch.eye(InFeatures, InFeaturesExtended, dtype: blkdiag1.dtype, device: blkdiag1.device);
        var y = MonarchMultiply.Bmm(eye, blkdiag1, blkdiag2).narrow(1, 0, OutFeatures);
        return y.t().contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>A dense <c>nn.Linear</c> computing exactly this layer's function (sparse-to-dense conversion).</summary>
    public Linear ToLinear()
    {
        var linear = nn.Linear(InFeatures, OutFeatures, hasBias: bias is not null, device: blkdiag1.device, dtype: blkdiag1.dtype);
        using var _ = no_grad();
        using var w = ToDense();
        linear.weight!.copy_(w);
        if (bias is not null)
            linear.bias!.copy_(bias);
        return linear;
    }

    /// <summary>
    /// The Monarch layer closest in Frobenius norm to a dense <paramref name="weight"/> (out, in), with <paramref name="bias"/>
    /// copied. For widths not divisible by <paramref name="nblocks"/> the error counts only the true entries, and projecting
    /// the zero-padded matrix attains that optimum.
    /// </summary>
    /// <remarks>
    /// Padded rows (outputs that are cut off) and padded columns (inputs that are zero) are whole rows and whole columns of
    /// each block of the projection, so each block is the true sub-block B bordered by zeros. The best approximation of a
    /// given rank over B's entries alone is B's truncated SVD (Eckart–Young), and the truncated SVD of B bordered by zeros is
    /// that same approximation bordered by zeros, so nothing is lost by projecting the padded matrix.
    /// </remarks>
    /// <param name="weight">Dense weight, shape (out, in).</param>
    /// <param name="bias">Bias of length out, or null for none.</param>
    /// <param name="nblocks">Blocks of each factor.</param>
    public static MonarchLinear FromDense(Tensor weight, Tensor? bias, int nblocks)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.shape.Length != 2)
            throw new ArgumentException($"FromDense expects a (out, in) weight; got shape [{string.Join(", ", weight.shape)}].", nameof(weight));
        var layer = new MonarchLinear((int)weight.shape[1], (int)weight.shape[0], nblocks, bias is not null);
        layer.to(weight.device);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var padded = nn.functional.pad(weight.detach(), new long[] { 0, layer.InFeaturesExtended - layer.InFeatures, 0, layer.OutFeaturesExtended - layer.OutFeatures });
        var projection = MonarchProjection.Project(padded, nblocks, layer.blkdiag1.shape[1], nblocks, layer.blkdiag2.shape[2]);
        layer.blkdiag1.copy_(projection.BlockDiagonal1);
        layer.blkdiag2.copy_(projection.BlockDiagonal2);
        if (bias is not null)
            layer.bias!.copy_(bias);
        projection.Dispose();
        return layer;
    }

    /// <summary>Pad, Reshape/Transpose/MatMul twice, Reshape back, Slice, Add: the bmm path in ONNX operators.</summary>
    string IOnnxExportable.ExportOnnx(OnnxGraphBuilder g, string input)
    {
        long k = blkdiag1.shape[0], p = blkdiag1.shape[2];
        long l = blkdiag2.shape[0], s = blkdiag2.shape[1], r = blkdiag2.shape[2];
        var leading = g.Node("Slice", new[] { g.Node("Shape", new[] { input }), g.Int64s(0), g.Int64s(-1) });
        var x = g.Node("Reshape", new[] { input, g.Int64s(-1, InFeatures) });
        if (InFeaturesExtended != InFeatures)
            x = g.Node("Pad", new[] { x, g.Int64s(0, 0, 0, InFeaturesExtended - InFeatures) });
        x = g.Node("Transpose", new[] { g.Node("Reshape", new[] { x, g.Int64s(-1, k, p) }) }, OnnxAttribute.Ints("perm", 1, 0, 2));
        using var w1t = blkdiag1.detach().transpose(1, 2).contiguous();
        var h = g.Node("MatMul", new[] { x, g.AddInitializer("monarch_w1_t", w1t) });
        h = g.Node("Transpose", new[] { h }, OnnxAttribute.Ints("perm", 1, 0, 2));
        h = g.Node("Transpose", new[] { g.Node("Reshape", new[] { h, g.Int64s(-1, r, l) }) }, OnnxAttribute.Ints("perm", 2, 0, 1));
        using var w2t = blkdiag2.detach().transpose(1, 2).contiguous();
        var y = g.Node("MatMul", new[] { h, g.AddInitializer("monarch_w2_t", w2t) });
        y = g.Node("Reshape", new[] { g.Node("Transpose", new[] { y }, OnnxAttribute.Ints("perm", 1, 2, 0)), g.Int64s(-1, s * l) });
        if (OutFeaturesExtended != OutFeatures)
            y = g.Node("Slice", new[] { y, g.Int64s(0), g.Int64s(OutFeatures), g.Int64s(1) });
        if (bias is not null)
            y = g.Node("Add", new[] { y, g.AddInitializer("monarch_bias", bias.detach()) });
        var shape = g.Node("Concat", new[] { leading, g.Int64s(OutFeatures) }, OnnxAttribute.Int("axis", 0));
        return g.Node("Reshape", new[] { y, shape });
    }
}
