using Microsoft.ML.Hazy.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Sequence.S4D;

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
    public (Tensor LogDA, Tensor DB) Discretize(S4DDiscretization discretization) => Discretize(Dt, A, InputMatrix, discretization);

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
}
