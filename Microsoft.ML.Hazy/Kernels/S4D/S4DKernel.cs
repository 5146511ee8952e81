using Microsoft.ML.Hazy.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Sequence.S4D;

/// <summary>The S4D formulas on tensors of any floating type (float64 for golden tests, float32 in models).</summary>
internal static class S4DMath
{
    /// <summary>
    /// ZOH: log Ā = ΔA, B̄ = (e^{ΔA} − 1)/A · B; bilinear: Ā = (1 + ΔA/2)/(1 − ΔA/2), B̄ = Δ/(1 − ΔA/2) · B.
    /// <paramref name="dt"/> is [H], <paramref name="a"/> and <paramref name="b"/> complex [H, N/2] (null b means B = 1).
    /// </summary>
    public static (Tensor LogDA, Tensor DB) Discretize(Tensor dt, Tensor a, Tensor? b, S4DDiscretization discretization)
    {
        var dtA = a * dt.unsqueeze(-1);
        using var one = 1.ToScalar();
        using var two = 2.ToScalar();
        Tensor logDA, dB;
        if (discretization == S4DDiscretization.Zoh)
        {
            logDA = dtA;
            dB = (dtA.exp() - one) / a;
        }
        else
        {
            // 1 − x and 1 + x as TorchSharp's operators compute them (−x + 1, x + 1), with scalars that are disposed.
            var denominator = (dtA / two).negative().add(one, one);
            logDA = ((dtA / two).add(one, one) / denominator).log();
            dB = dt.unsqueeze(-1) / denominator;
        }
        return (logDA, b is null ? dB : dB * b);
    }

    /// <summary>
    /// K[c, h, ℓ] = 2·Re Σ_n C̃[c, h, n]·Ā[h, n]^ℓ for ℓ &lt; <paramref name="length"/>, the Vandermonde product, computed
    /// in blocks ℓ = bJ + j as (C̃·Ā^{bJ}) × Ā^j so no [H, N/2, L] tensor is ever formed.
    /// </summary>
    /// <param name="cTilde">C·B̄, complex [channels, H, N/2].</param>
    /// <param name="logDA">log Ā, complex [H, N/2].</param>
    /// <param name="length">The kernel length L.</param>
    /// <param name="block">The block length J; 0 chooses the power of two nearest above √L.</param>
    /// <returns>The real kernel [channels, H, L].</returns>
    public static Tensor Kernel(Tensor cTilde, Tensor logDA, long length, long block = 0)
    {
        long j = block > 0 ? block : BlockLength(length);
        long blocks = (length + j - 1) / j;
        long channels = cTilde.shape[0], h = cTilde.shape[1], modes = cTilde.shape[2];
        var realType = logDA.real.dtype;
        var w = logDA.unsqueeze(-1);
        using var zero = 0.ToScalar();
        using var one = 1.ToScalar();
        using var two = 2.ToScalar();
        using var blockLength = j.ToScalar();
        using var blockCount = blocks.ToScalar();
        var inner = (w * arange(zero, blockLength, one, realType, logDA.device)).exp();
        var outer = (w * (arange(zero, blockCount, one, realType, logDA.device) * blockLength)).exp();
        var starts = (cTilde.unsqueeze(-1) * outer).permute(1, 0, 3, 2).reshape(h, channels * blocks, modes);
        var k = starts.matmul(inner).real * two;
        return k.reshape(h, channels, blocks * j).narrow(2, 0, length).permute(1, 0, 2);
    }

    /// <summary>The block length of <see cref="Kernel"/>: the power of two at or above √L.</summary>
    public static long BlockLength(long length)
    {
        long j = 1;
        while (j * j < length)
            j *= 2;
        return j;
    }

    /// <summary>
    /// The causal convolution y_t = Σ_{s≤t} k_{t−s} u_s through FFTs of size 2L (zero padding turns circular into
    /// linear convolution); with a backward kernel k' also y_t += Σ_{s&gt;t} k'_{s−t−1} u_s, the reference's
    /// bidirectional convolution, whose backward kernel sees only strictly later steps.
    /// </summary>
    /// <param name="u">The input [B, L, H].</param>
    /// <param name="k">[1, H, L] (causal) or [2, H, L] (forward, backward).</param>
    public static Tensor FftConv(Tensor u, Tensor k)
    {
        long length = u.shape[1];
        long n = 2 * length;
        var circular = k.shape[0] == 1 ? k[0] : Circular(k, n);
        // Transforms along the contiguous last axis of [B, H, L] run 1.5–3× faster than along the time axis of [B, L, H].
        var uf = fft.rfft(u.transpose(1, 2), n, -1);
        return fft.irfft(uf * fft.rfft(circular, n, -1), n, -1).narrow(-1, 0, length).transpose(1, 2);
    }

    /// <summary>
    /// The length-<paramref name="n"/> circular kernel of a two-sided convolution: k[0] at 0..L−1 and k[1] reversed at
    /// n − L..n − 1 (k[1][m] at lag −(m + 1)), the reference's pad(k0, (0, L)) + pad(k1.flip(−1), (L, 0)) for n = 2L.
    /// Exact for inputs of at most n/2 steps.
    /// </summary>
    public static Tensor Circular(Tensor k, long n)
    {
        long length = k.shape[2];
        var forward = nn.functional.pad(k[0], new[] { 0L, n - length });
        var backward = nn.functional.pad(k[1].flip(-1), new[] { n - length, 0L });
        using var one = 1.ToScalar();
        return forward.add(backward, one);
    }
}

/// <summary>
/// The state-space part of one S4D layer, [H] features of N/2 complex modes each: log Δ, A stored as real tensors
/// (log(−Re A) and Im A) and B when trained (a real [H, N/2, 2] view). The reference trains these with their own
/// learning rate and no weight decay, so they live in this module (parameter names <c>ssm.*</c>).
/// </summary>
internal sealed class S4DStateSpace : nn.Module, ISeededModule
{
    private readonly Parameter log_dt;
    private readonly Parameter log_A_real;
    private readonly Parameter A_imag;
    private readonly Tensor? B;
    private readonly double _logDtMin;
    private readonly double _logDtMax;

    public S4DStateSpace(int width, S4DOptions options) : base(nameof(S4DStateSpace))
    {
        var (re, im, b) = S4DInitializations.Modes(options.Initialization, options.StateSize);
        int modes = re.Length;
        _logDtMin = Math.Log(options.DtMin);
        _logDtMax = Math.Log(options.DtMax);
        log_dt = new Parameter(LogDt(width, null));
        using var reA = tensor(re.Select(r => (float)Math.Log(-r)).ToArray());
        using var imA = tensor(im.Select(i => (float)i).ToArray());
        log_A_real = new Parameter(reA.unsqueeze(0).repeat(width, 1));
        A_imag = new Parameter(imA.unsqueeze(0).repeat(width, 1));
        if (b is not null || options.TrainB)
        {
            var values = b ?? Enumerable.Repeat(System.Numerics.Complex.One, modes).ToArray();
            using var one = tensor(values.SelectMany(c => new[] { (float)c.Real, (float)c.Imaginary }).ToArray(), new long[] { 1, modes, 2 });
            var full = one.repeat(width, 1, 1);
            B = options.TrainB ? new Parameter(full) : full;
        }
        RegisterComponents();
    }

    /// <summary>Unused: the state space draws only its initial log Δ.</summary>
    public Generator? Generator { get; set; }

    /// <summary>log Δ ~ U(log Δ_min, log Δ_max) per feature; A and B start from their deterministic initialisation.</summary>
    public void ResetParameters(Generator generator)
    {
        using var _ = no_grad();
        using var logDt = LogDt(log_dt.shape[0], generator);
        log_dt.copy_(logDt);
    }

    private Tensor LogDt(long width, Generator? generator)
    {
        using var span = (_logDtMax - _logDtMin).ToScalar();
        using var low = _logDtMin.ToScalar();
        using var one = 1.ToScalar();
        using var uniform = rand(width, dtype: ScalarType.Float64, generator: generator);
        return uniform.mul_(span).add_(low, one).to(ScalarType.Float32);
    }

    /// <summary>Δ, [H].</summary>
    public Tensor Dt => log_dt.exp();

    /// <summary>A = −exp(log_A_real) + i·A_imag, complex [H, N/2].</summary>
    public Tensor A => complex(-log_A_real.exp(), A_imag);

    /// <summary>B, complex [H, N/2], or null for B = 1.</summary>
    public Tensor? InputMatrix => B is null ? null : view_as_complex(B);

    /// <summary>(log Ā, B̄) of the current parameters.</summary>
    public (Tensor LogDA, Tensor DB) Discretize(S4DDiscretization discretization) => S4DMath.Discretize(Dt, A, InputMatrix, discretization);
}
