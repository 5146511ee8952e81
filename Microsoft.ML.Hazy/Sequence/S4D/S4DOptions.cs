namespace Microsoft.ML.Hazy.Sequence.S4D;

/// <summary>How the diagonal state matrix A of an S4D layer starts (Gu, Gupta, Goel and Ré, 2022, §4).</summary>
public enum S4DInitialization
{
    /// <summary>S4D-Lin: A_n = −1/2 + iπn. The reference's default; it fails on very long dependencies (Path-X).</summary>
    Lin,
    /// <summary>S4D-Inv: A_n = −1/2 + i(N/π)(N/(2n+1) − 1).</summary>
    Inv,
    /// <summary>S4D-LegS: A_n = −1/2 + iω_n with ω_n the eigenvalues of the normal part of HiPPO-LegS, and B from its eigenvectors.</summary>
    LegS,
    /// <summary>S4D-Real: A_n = −(n + 1), a purely decaying (non-oscillating) basis.</summary>
    Real,
}

/// <summary>How the continuous state-space model is discretized with step Δ.</summary>
public enum S4DDiscretization
{
    /// <summary>Zero-order hold: Ā = exp(ΔA), B̄ = (exp(ΔA) − 1)/A · B.</summary>
    Zoh,
    /// <summary>Bilinear (Tustin): Ā = (1 + ΔA/2)/(1 − ΔA/2), B̄ = Δ/(1 − ΔA/2) · B.</summary>
    Bilinear,
}

/// <summary>
/// Options of the S4D backbone: the diagonal state-space layers of "On the Parameterization and Initialization
/// of Diagonal State Space Models" (Gu, Gupta, Goel and Ré, 2022). Defaults follow the reference S4D model.
/// </summary>
public sealed class S4DOptions
{
    /// <summary>The state size N per feature (<c>d_state</c>); the layer keeps N/2 complex modes, their conjugates implied. Must be even.</summary>
    public int StateSize { get; set; } = 64;

    /// <summary>The initialization of A (and B for LegS).</summary>
    public S4DInitialization Initialization { get; set; } = S4DInitialization.Lin;

    /// <summary>The discretization.</summary>
    public S4DDiscretization Discretization { get; set; } = S4DDiscretization.Zoh;

    /// <summary>Smallest initial step Δ; log Δ starts uniform in [log <see cref="DtMin"/>, log <see cref="DtMax"/>].</summary>
    public double DtMin { get; set; } = 1e-3;

    /// <summary>Largest initial step Δ.</summary>
    public double DtMax { get; set; } = 1e-1;

    /// <summary>Train the input matrix B; otherwise B stays at its initial value (1, or the LegS projection).</summary>
    public bool TrainB { get; set; }

    /// <summary>
    /// Learning rate of the state-space parameters (Δ, A, and B when trained), which the reference keeps in their
    /// own optimizer group; 0 freezes them.
    /// </summary>
    public double SsmLearningRate { get; set; } = 1e-3;

    /// <summary>Weight decay of the state-space parameters; the reference always uses 0.</summary>
    public double SsmWeightDecay { get; set; }

    internal void Validate()
    {
        if (StateSize < 2 || StateSize % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(StateSize), StateSize, "S4DOptions.StateSize must be an even number of at least 2.");
        if (!(DtMin > 0) || !(DtMax >= DtMin) || !double.IsFinite(DtMax))
            throw new ArgumentOutOfRangeException(nameof(DtMin), $"S4DOptions.DtMin ({DtMin}) and DtMax ({DtMax}) must satisfy 0 < DtMin ≤ DtMax.");
        if (SsmLearningRate < 0 || !double.IsFinite(SsmLearningRate))
            throw new ArgumentOutOfRangeException(nameof(SsmLearningRate), SsmLearningRate, "S4DOptions.SsmLearningRate must be a non-negative number.");
        if (!(SsmWeightDecay >= 0) || !double.IsFinite(SsmWeightDecay))
            throw new ArgumentOutOfRangeException(nameof(SsmWeightDecay), SsmWeightDecay, "S4DOptions.SsmWeightDecay must be a non-negative number.");
        if (!Enum.IsDefined(Initialization))
            throw new ArgumentOutOfRangeException(nameof(Initialization), Initialization, "Unknown S4DOptions.Initialization.");
        if (!Enum.IsDefined(Discretization))
            throw new ArgumentOutOfRangeException(nameof(Discretization), Discretization, "Unknown S4DOptions.Discretization.");
    }
}
