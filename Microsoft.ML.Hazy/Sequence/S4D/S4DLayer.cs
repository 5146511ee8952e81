using Microsoft.ML.Hazy.Kernels;
using Microsoft.ML.Hazy.Kernels.S4D;
using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Layers.Monarch;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Sequence.S4D;

/// <summary>
/// One S4D layer (the reference's S4D block): y = GLU(W · dropout(GELU(K ∗ u + D·u))), where K is the
/// diagonal SSM's kernel, one per feature, applied by FFT. When bidirectional a second kernel K' adds
/// Σ_{s&gt;t} K'_{s−t−1} u_s, the strictly later steps, as the reference's FFTConv does (see <see cref="S4DMath.FftConv"/>).
/// Input and output [B, L, H]. W (H → 2H) is dense, or a <see cref="MonarchLinear"/> given <c>monarchBlocks</c> &gt; 0.
/// </summary>
internal sealed class S4DLayer : nn.Module<Tensor, Tensor>, ISequenceLayer, ISeededModule
{
    private readonly S4DStateSpace ssm;
    private readonly Parameter C;
    private readonly Parameter D;
    private readonly nn.Module<Tensor, Tensor> output_linear;
    private readonly S4DDiscretization _discretization;
    private readonly double _dropout;

    public S4DLayer(int width, S4DOptions options, double dropout, bool bidirectional, int monarchBlocks = 0) : base(nameof(S4DLayer))
    {
        int modes = options.StateSize / 2;
        ssm = new S4DStateSpace(width, options);
        using var halfStd = Math.Sqrt(0.5).ToScalar();
        C = new Parameter(randn(bidirectional ? 2 : 1, width, modes, 2) * halfStd);
        D = new Parameter(randn(width));
        output_linear = MonarchLinear.OrDense(width, 2 * width, monarchBlocks);
        _discretization = options.Discretization;
        _dropout = dropout;
        Bidirectional = bidirectional;
        RegisterComponents();
    }

    public bool Bidirectional { get; }

    public Generator? Generator { get; set; }

    /// <summary>C ~ N(0, ½) per real and imaginary part, D ~ N(0, 1), as the reference draws them.</summary>
    public void ResetParameters(Generator generator)
    {
        using var _ = no_grad();
        using var half = Math.Sqrt(0.5).ToScalar();
        using var c = randn(C.shape, generator: generator);
        using var d = randn(D.shape, generator: generator);
        C.copy_(c.mul_(half));
        D.copy_(d);
    }

    /// <summary>How <see cref="ExportOnnx"/> applies the kernel; <see cref="S4DOnnxConvolution.Auto"/> picks the faster for the length.</summary>
    public S4DOnnxConvolution OnnxConvolution { get; set; } = S4DOnnxConvolution.Auto;

    internal S4DStateSpace StateSpace => ssm;

    /// <summary>K = 2·Re((C·B̄) · V_L(Ā)): [channels, H, L], channels 2 when bidirectional (forward, backward).</summary>
    public Tensor Kernel(long length)
    {
        var (logDA, dB) = ssm.Discretize(_discretization);
        return KernelRegistry.S4D(C.device_type, C.dtype).Kernel(view_as_complex(C) * dB, logDA, length);
    }

    public override Tensor forward(Tensor input) => Forward(input, null);

    public Tensor Forward(Tensor input, Tensor? mask)
    {
        var u = mask is null ? input : input * mask;
        using var one = 1.ToScalar();
        var y = KernelRegistry.S4D(u.device_type, u.dtype).Convolve(u, Kernel(u.shape[1])).add(u * D, one);
        y = TiedDropout.Apply(nn.functional.gelu(y), _dropout, training, Generator);
        return nn.functional.glu(output_linear.forward(y), -1);
    }

    public string ExportOnnx(OnnxGraphBuilder graph, string input, string? mask, int maxLength)
    {
        var u = mask is null ? input : graph.Node("Mul", new[] { input, mask });
        string y;
        using (no_grad())
        {
            using var kernel = Kernel(maxLength).detach().clone();
            using var one = 1.ToScalar();
            kernel[0, TensorIndex.Colon, 0].add_(D.detach(), one);
            y = S4DOnnx.Convolve(graph, u, kernel, OnnxConvolution);
        }
        y = OnnxModuleExporter.Gelu(graph, y, tanhApproximation: false);
        long width = D.shape[0];
        var projected = OnnxModuleExporter.Export(graph, output_linear, y);
        var a = graph.Node("Slice", new[] { projected, graph.Int64s(0), graph.Int64s(width), graph.Int64s(-1) });
        var b = graph.Node("Slice", new[] { projected, graph.Int64s(width), graph.Int64s(2 * width), graph.Int64s(-1) });
        return graph.Node("Mul", new[] { a, graph.Node("Sigmoid", new[] { b }) });
    }

    public ISequenceLayerStepper? CreateStepper(int batchSize) => Bidirectional ? null : new Stepper(this, batchSize);

    /// <summary>
    /// The recurrent view x_k = Ā x_{k−1} + u_k, y_k = 2·Re(Σ_n C̃_n x_k,n) + D·u_k with C̃ = C·B̄ (B̄ folded into C),
    /// then the same GELU and GLU as the convolutional view. State [B, H, N/2] complex.
    /// </summary>
    private sealed class Stepper : ISequenceLayerStepper
    {
        private readonly S4DLayer _layer;
        private readonly Tensor _dA;
        private readonly Tensor _cTilde;
        private Tensor _state;

        public Stepper(S4DLayer layer, int batchSize)
        {
            _layer = layer;
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var (logDA, dB) = layer.ssm.Discretize(layer._discretization);
            _dA = logDA.exp().DetachFromDisposeScope();
            _cTilde = (view_as_complex(layer.C)[0] * dB).DetachFromDisposeScope();
            _state = zeros(new[] { batchSize, _dA.shape[0], _dA.shape[1] }, _dA.dtype, _dA.device).DetachFromDisposeScope();
        }

        public Tensor Step(Tensor input)
        {
            using var one = 1.ToScalar();
            using var two = 2.ToScalar();
            var next = (_dA * _state).add(input.unsqueeze(-1), one).DetachFromDisposeScope();
            _state.Dispose();
            _state = next;
            var y = ((_state * _cTilde).sum(-1).real * two).add(input * _layer.D, one);
            return nn.functional.glu(_layer.output_linear.forward(nn.functional.gelu(y)), -1);
        }

        public void Dispose()
        {
            _dA.Dispose();
            _cTilde.Dispose();
            _state.Dispose();
        }
    }
}

/// <summary>How an exported S4D layer applies its fixed kernel in ONNX Runtime.</summary>
internal enum S4DOnnxConvolution
{
    /// <summary>Direct for short kernels, Fourier for long ones (the crossover measured by the <c>s4d</c> benchmark).</summary>
    Auto,
    /// <summary>A depthwise <c>Conv</c> (group = H) with left padding: O(L·K) per feature.</summary>
    Direct,
    /// <summary>ONNX's DFT operator, multiply by the kernel's precomputed spectrum, inverse DFT: O(n log n) per feature, n the power of two ≥ 2L.</summary>
    Fourier,
    /// <summary>The same spectral product with each DFT of size n = n1·n2 written as two small matrix products and a twiddle (Cooley–Tukey): O(n·√n) per feature, run by GEMM.</summary>
    MatMulFourier,
}

/// <summary>Writes "y = K ∗ u" of a fixed kernel into an ONNX graph, directly or through the DFT.</summary>
internal static class S4DOnnx
{
    /// <summary>Kernels of at most this many steps use <see cref="S4DOnnxConvolution.Direct"/> under <see cref="S4DOnnxConvolution.Auto"/>.</summary>
    public const int DirectUpTo = 64;

    /// <param name="graph">The graph.</param>
    /// <param name="input">[B, T, H] with T at most the kernel length.</param>
    /// <param name="kernel">[1, H, L] causal or [2, H, L] forward and backward (the convention of <see cref="S4DMath.FftConv"/>), D already added at lag 0 of the forward kernel.</param>
    /// <param name="mode">Direct or Fourier.</param>
    public static string Convolve(OnnxGraphBuilder graph, string input, Tensor kernel, S4DOnnxConvolution mode)
    {
        long length = kernel.shape[2];
        if (mode == S4DOnnxConvolution.Auto)
            mode = length <= DirectUpTo ? S4DOnnxConvolution.Direct : S4DOnnxConvolution.MatMulFourier;
        return mode switch
        {
            S4DOnnxConvolution.Direct => Direct(graph, input, kernel),
            S4DOnnxConvolution.Fourier => Fourier(graph, input, kernel),
            _ => MatMulFourier(graph, input, kernel),
        };
    }

    /// <summary>
    /// y_t = Σ_m k_m u_{t−m} (+ Σ_m k'_m u_{t+1+m}) as a cross-correlation with the flipped kernel; k'_{L−1} would
    /// reach step t + L, beyond any input, so it is left out.
    /// </summary>
    private static string Direct(OnnxGraphBuilder graph, string input, Tensor kernel)
    {
        long h = kernel.shape[1], length = kernel.shape[2];
        using var forward = kernel[0].flip(-1);
        using var weights = kernel.shape[0] == 1
            ? forward.unsqueeze(1)
            : cat(new[] { forward, kernel[1].narrow(-1, 0, length - 1) }, -1).unsqueeze(1);
        long right = kernel.shape[0] == 1 ? 0 : length - 1;
        var channelsFirst = graph.Node("Transpose", new[] { input }, OnnxAttribute.Ints("perm", 0, 2, 1));
        var conv = graph.Node("Conv", new[] { channelsFirst, graph.AddInitializer("s4d_kernel", weights) },
            OnnxAttribute.Int("group", h), OnnxAttribute.Ints("kernel_shape", weights.shape[2]), OnnxAttribute.Ints("pads", length - 1, right));
        return graph.Node("Transpose", new[] { conv }, OnnxAttribute.Ints("perm", 0, 2, 1));
    }

    /// <summary>
    /// y = Re IDFT(DFT(u) · K̂)[:T] with both transforms as matrix products. For n = n1·n2, x[m1 + n1·m2] as A[m2, m1]:
    /// DFT(x)[n2·k1 + k2] = Σ_{m1} F_{n1}[k1, m1] ω_n^{m1·k2} Σ_{m2} F_{n2}[k2, m2] A[m2, m1]; the inverse mirrors it. Signals are
    /// zero beyond n/2 and only outputs below n/2 are kept, so the outer products use half of F_{n2}.
    /// </summary>
    private static string MatMulFourier(OnnxGraphBuilder graph, string input, Tensor kernel)
    {
        long length = kernel.shape[2], h = kernel.shape[1];
        long n = 1;
        while (n < 2 * length)
            n *= 2;
        long n1 = 1;
        while (n1 * n1 * 4 < n)
            n1 *= 2;
        long n2 = n / n1, half = n2 / 2;

        // Constants in float64, rounded once to float32; exponents reduced mod n so large products lose nothing.
        (float[] Re, float[] Im) Dft(long rows, long cols, long size)
        {
            var re = new float[rows * cols];
            var im = new float[rows * cols];
            for (long r = 0; r < rows; r++)
            {
                for (long c = 0; c < cols; c++)
                {
                    double angle = -2 * Math.PI * (r * c % size) / size;
                    re[r * cols + c] = (float)Math.Cos(angle);
                    im[r * cols + c] = (float)Math.Sin(angle);
                }
            }
            return (re, im);
        }
        var (f2Re, f2Im) = Dft(n2, half, n2);
        var (f1Re, f1Im) = Dft(n1, n1, n1);
        var (wRe, wIm) = Dft(n2, n1, n);
        var (f2TopRe, f2TopIm) = Dft(half, n2, n2);
        using var circular = kernel.shape[0] == 1 ? nn.functional.pad(kernel[0], new[] { 0L, n - length }) : S4DMath.Circular(kernel, n);
        using var points = n.ToScalar();
        using var spectrum = fft.fft_(circular.to(ScalarType.Float64), n, -1) / points;
        // K̂[h, n2·k1 + k2] laid out as [h, k2, k1], the layout of the transposed products below.
        using var laidOut = spectrum.reshape(h, n1, n2).transpose(1, 2).contiguous();
        using var kRe = laidOut.real.to(ScalarType.Float32).contiguous();
        using var kIm = laidOut.imag.to(ScalarType.Float32).contiguous();

        string C(float[] values, params long[] dims) => graph.AddInitializer("s4d_dft", values, dims);
        string MatMul(string a, string b) => graph.Node("MatMul", new[] { a, b });
        string Mul(string a, string b) => graph.Node("Mul", new[] { a, b });
        string Add(string a, string b) => graph.Node("Add", new[] { a, b });
        string Sub(string a, string b) => graph.Node("Sub", new[] { a, b });
        var F2Re = C(f2Re, n2, half);
        var F2Im = C(f2Im, n2, half);
        var F1Re = C(f1Re, n1, n1);
        var F1Im = C(f1Im, n1, n1);
        var WRe = C(wRe, n2, n1);
        var WIm = C(wIm, n2, n1);
        var F2TopRe = C(f2TopRe, half, n2);
        var F2TopIm = C(f2TopIm, half, n2);
        var KRe = graph.AddInitializer("s4d_spectrum_re", kRe);
        var KIm = graph.AddInitializer("s4d_spectrum_im", kIm);

        // [B, T, H] → [B, H, n/2] zero-padded → A [B, H, n2/2, n1].
        var channelsFirst = graph.Node("Transpose", new[] { input }, OnnxAttribute.Ints("perm", 0, 2, 1));
        var steps = graph.Node("Slice", new[] { graph.Node("Shape", new[] { input }), graph.Int64s(1), graph.Int64s(2) });
        var padding = graph.Node("Sub", new[] { graph.Int64s(n / 2), steps });
        var pads = graph.Node("Concat", new[] { graph.Int64s(0, 0, 0, 0, 0), padding }, OnnxAttribute.Int("axis", 0));
        var a = graph.Node("Reshape", new[] { graph.Node("Pad", new[] { channelsFirst, pads }), graph.Int64s(0, h, half, n1) });

        // Forward: B = F_{n2}[:, :n2/2] A; C = B ⊙ W; Xᵀ = C F_{n1}.
        var bRe = MatMul(F2Re, a);
        var bIm = MatMul(F2Im, a);
        var cRe = Sub(Mul(bRe, WRe), Mul(bIm, WIm));
        var cIm = Add(Mul(bRe, WIm), Mul(bIm, WRe));
        var xRe = Sub(MatMul(cRe, F1Re), MatMul(cIm, F1Im));
        var xIm = Add(MatMul(cRe, F1Im), MatMul(cIm, F1Re));

        // Spectral product with K̂/n, then the inverse: Dᵀ = Yᵀ conj(F_{n1}); Eᵀ = Dᵀ ⊙ conj(W); y = Re(conj(F_{n2})[:n2/2] Eᵀ).
        var yRe = Sub(Mul(xRe, KRe), Mul(xIm, KIm));
        var yIm = Add(Mul(xRe, KIm), Mul(xIm, KRe));
        var dRe = Add(MatMul(yRe, F1Re), MatMul(yIm, F1Im));
        var dIm = Sub(MatMul(yIm, F1Re), MatMul(yRe, F1Im));
        var eRe = Add(Mul(dRe, WRe), Mul(dIm, WIm));
        var eIm = Sub(Mul(dIm, WRe), Mul(dRe, WIm));
        var y = Add(MatMul(F2TopRe, eRe), MatMul(F2TopIm, eIm));

        var flat = graph.Node("Reshape", new[] { y, graph.Int64s(0, h, n / 2) });
        var valid = graph.Node("Slice", new[] { flat, graph.Int64s(0), steps, graph.Int64s(2) });
        return graph.Node("Transpose", new[] { valid }, OnnxAttribute.Ints("perm", 0, 2, 1));
    }

    /// <summary>y = IDFT(DFT(u, n) · DFT(k_circular, n))[:T], n the power of two ≥ 2L so no wrap-around reaches a valid step.</summary>
    private static string Fourier(OnnxGraphBuilder graph, string input, Tensor kernel)
    {
        long length = kernel.shape[2];
        long n = 1;
        while (n < 2 * length)
            n *= 2;
        using var circular = kernel.shape[0] == 1 ? nn.functional.pad(kernel[0], new[] { 0L, n - length }) : S4DMath.Circular(kernel, n);
        using var spectrum = view_as_real(fft.fft_(circular.to(ScalarType.Float64), n, -1).t().contiguous()).to(ScalarType.Float32);
        using var re = spectrum.narrow(-1, 0, 1);
        using var im = spectrum.narrow(-1, 1, 1);
        using var same = cat(new[] { re, re }, -1);
        using var cross = cat(new[] { -im, im }, -1);

        var signal = graph.Node("Unsqueeze", new[] { input, graph.Int64s(3) });
        var dftLength = graph.AddInitializer("dft_length", new[] { n });
        var u = graph.Node("DFT", new[] { signal, dftLength }, OnnxAttribute.Int("axis", 1));
        var swapped = graph.Node("Gather", new[] { u, graph.Int64s(1, 0) }, OnnxAttribute.Int("axis", 3));
        var product = graph.Node("Add", new[]
        {
            graph.Node("Mul", new[] { u, graph.AddInitializer("s4d_spectrum", same) }),
            graph.Node("Mul", new[] { swapped, graph.AddInitializer("s4d_spectrum_cross", cross) }),
        });
        var y = graph.Node("DFT", new[] { product }, OnnxAttribute.Int("axis", 1), OnnxAttribute.Int("inverse", 1));
        var steps = graph.Node("Slice", new[] { graph.Node("Shape", new[] { input }), graph.Int64s(1), graph.Int64s(2) });
        var valid = graph.Node("Slice", new[] { y, graph.Node("Concat", new[] { graph.Int64s(0), graph.Int64s(0) }, OnnxAttribute.Int("axis", 0)),
            graph.Node("Concat", new[] { steps, graph.Int64s(1) }, OnnxAttribute.Int("axis", 0)), graph.Int64s(1, 3) });
        return graph.Node("Squeeze", new[] { valid, graph.Int64s(3) });
    }
}
