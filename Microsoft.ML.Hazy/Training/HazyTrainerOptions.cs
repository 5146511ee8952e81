using Microsoft.ML.Hazy.Data;
namespace Microsoft.ML.Hazy.Training;

/// <summary>The optimizers Hazy trainers offer.</summary>
public enum HazyOptimizer
{
    /// <summary>Adam with decoupled weight decay (Loshchilov and Hutter).</summary>
    AdamW,
    /// <summary>Adam; weight decay is added to the gradient (L2 penalty).</summary>
    Adam,
    /// <summary>Stochastic gradient descent with Nesterov momentum 0.9.</summary>
    Sgd,
}

/// <summary>How the learning rate changes over training.</summary>
public enum LearningRateSchedule
{
    /// <summary>Linear warm-up, then constant.</summary>
    Constant,
    /// <summary>Linear warm-up, then cosine decay to zero at the last step.</summary>
    Cosine,
}

/// <summary>
/// An optimizer parameter group: the parameters whose names start with <see cref="NamePrefix"/> get
/// their own learning rate and weight decay (for example state-space parameters with no weight decay).
/// </summary>
public sealed class ParameterGroupOptions
{
    /// <summary>
    /// Prefix of the parameter names (as in <c>named_parameters()</c>) that belong to the group. A <c>*</c>
    /// stands for one dot-separated name segment, so <c>blocks.*.layer.ssm.</c> selects the state-space
    /// parameters of every block.
    /// </summary>
    public string NamePrefix { get; set; } = "";

    /// <summary>The group's learning rate; null takes the trainer's.</summary>
    public double? LearningRate { get; set; }

    /// <summary>The group's weight decay; null takes the trainer's.</summary>
    public double? WeightDecay { get; set; }

    /// <summary>Whether the parameter <paramref name="name"/> belongs to this group.</summary>
    internal bool Matches(string name)
    {
        int n = 0;
        for (int p = 0; p < NamePrefix.Length; p++)
        {
            if (NamePrefix[p] == '*')
            {
                while (n < name.Length && name[n] != '.')
                    n++;
            }
            else if (n >= name.Length || name[n++] != NamePrefix[p])
            {
                return false;
            }
        }
        return true;
    }
}

/// <summary>One progress report from a Hazy trainer, sent after every optimizer step and epoch.</summary>
/// <param name="Epoch">The current epoch, from 1.</param>
/// <param name="NumberOfEpochs">The epochs planned.</param>
/// <param name="Step">The optimizer step within the epoch, from 1.</param>
/// <param name="StepsPerEpoch">Steps in one epoch.</param>
/// <param name="TrainLoss">Mean training loss of the epoch so far.</param>
/// <param name="ValidationLoss">Validation loss at the end of the epoch, when a validation set is given.</param>
/// <param name="ValidationMetric">Validation metric (accuracy, or RMSE for regression) at the end of the epoch.</param>
/// <param name="MetricName">Name of <paramref name="ValidationMetric"/>.</param>
/// <param name="EpochCompleted">True for the report sent at the end of an epoch.</param>
/// <param name="Elapsed">Time since training started.</param>
public sealed record TrainingProgress(
    int Epoch, int NumberOfEpochs, int Step, int StepsPerEpoch, double TrainLoss,
    double? ValidationLoss, double? ValidationMetric, string MetricName, bool EpochCompleted, TimeSpan Elapsed);

/// <summary>Options every Hazy trainer shares: the training loop, its schedule, validation and control.</summary>
/// <remarks>
/// Options are properties, so reflection-based tools (AutoML's search spaces, configuration binders) see them. Their
/// initial values come from <see cref="Defaults"/> (and each trainer's own <c>Options.Defaults</c>), the same constants
/// the catalog's short overloads use. The trainer checks every value when it is built (<c>Check</c>), so a bad value
/// fails with an <see cref="ArgumentOutOfRangeException"/> naming the option before any data is read.
/// </remarks>
public abstract class HazyTrainerOptions
{
    /// <summary>The defaults every trainer shares unless its own <c>Options.Defaults</c> overrides them.</summary>
    public static class Defaults
    {
        /// <summary>Passes over the training data: 10.</summary>
        public const int NumberOfEpochs = 10;

        /// <summary>Rows per optimizer step: 64.</summary>
        public const int BatchSize = 64;

        /// <summary>Peak learning rate: 1e-3.</summary>
        public const double LearningRate = 1e-3;

        /// <summary>Weight decay: 1e-4.</summary>
        public const double WeightDecay = 1e-4;

        /// <summary>The optimizer: AdamW.</summary>
        public const HazyOptimizer Optimizer = HazyOptimizer.AdamW;

        /// <summary>The learning-rate schedule: cosine.</summary>
        public const LearningRateSchedule Schedule = LearningRateSchedule.Cosine;

        /// <summary>Warm-up fraction: none.</summary>
        public const double WarmupFraction = 0.0;
    }

    /// <summary>The label column.</summary>
    public string LabelColumnName { get; set; } = DefaultColumnNames.Label;

    /// <summary>The feature column: a known-size vector of <see cref="float"/>.</summary>
    public string FeatureColumnName { get; set; } = DefaultColumnNames.Features;

    /// <summary>
    /// The example-weight column (Single or Boolean, finite and non-negative), or null to weigh every row alike. The loss is
    /// the weighted mean Σ wᵢ·lᵢ / Σ wᵢ over each batch, so a weight of 0 leaves a row out and a weight of 2 counts it twice;
    /// the validation loss is weighted too when the validation set has the column. Validation metrics are not weighted.
    /// </summary>
    public string? ExampleWeightColumnName { get; set; }

    /// <summary>Passes over the training data.</summary>
    public int NumberOfEpochs { get; set; } = Defaults.NumberOfEpochs;

    /// <summary>Rows per optimizer step.</summary>
    public int BatchSize { get; set; } = Defaults.BatchSize;

    /// <summary>Peak learning rate.</summary>
    public double LearningRate { get; set; } = Defaults.LearningRate;

    /// <summary>Weight decay (decoupled for AdamW).</summary>
    public double WeightDecay { get; set; } = Defaults.WeightDecay;

    /// <summary>The optimizer.</summary>
    public HazyOptimizer Optimizer { get; set; } = Defaults.Optimizer;

    /// <summary>The learning-rate schedule.</summary>
    public LearningRateSchedule Schedule { get; set; } = Defaults.Schedule;

    /// <summary>Fraction of all steps spent warming the learning rate up linearly from zero.</summary>
    public double WarmupFraction { get; set; } = Defaults.WarmupFraction;

    /// <summary>Parameter groups with their own learning rate and weight decay; other parameters use the trainer's.</summary>
    public List<ParameterGroupOptions> ParameterGroups { get; set; } = new();

    /// <summary>Data scored after every epoch; its loss drives early stopping.</summary>
    public IDataView? ValidationSet { get; set; }

    /// <summary>Stop after this many epochs without a lower validation loss and keep the best weights; 0 disables.</summary>
    public int EarlyStoppingPatience { get; set; }

    /// <summary>Clip the gradients' global norm to this value; 0 disables.</summary>
    public double GradientClipNorm { get; set; }

    /// <summary>
    /// When positive, training takes at least this many optimizer steps: <see cref="NumberOfEpochs"/> is raised to the
    /// whole number of epochs that reaches it. A small data set then still gets enough updates (100 rows in batches of 64
    /// make only 2 steps an epoch). 0 (the default) trains exactly <see cref="NumberOfEpochs"/> epochs.
    /// </summary>
    public int MinimumSteps { get; set; }

    /// <summary>
    /// When positive, training takes at most about this many optimizer steps: <see cref="NumberOfEpochs"/> is lowered to
    /// the whole number of epochs that stays within it, but never below one epoch. Applied after <see cref="MinimumSteps"/>.
    /// 0 (the default) sets no limit.
    /// </summary>
    public int MaximumSteps { get; set; }

    /// <summary>
    /// When no <see cref="ValidationSet"/> is given, the fraction of the training rows held out as one, stratified by
    /// class for classifiers and chosen with the run's seed; the model keeps the weights of the epoch with the lowest
    /// loss on the held-out rows, and <see cref="EarlyStoppingPatience"/> stops on it. The rows are held out only when
    /// the training data has at least <see cref="MinimumRowsForValidationSplit"/> rows (a tiny set needs every row to
    /// learn from). 0 (the default) holds out nothing.
    /// </summary>
    public double ValidationFraction { get; set; }

    /// <summary>The fewest training rows for which <see cref="ValidationFraction"/> holds rows out; 1,000 by default.</summary>
    public int MinimumRowsForValidationSplit { get; set; } = 1000;

    /// <summary>Seed for weights, dropout and shuffling; null draws one from the <see cref="MLContext"/> seed.</summary>
    public int? Seed { get; set; }

    /// <summary>
    /// Threads for training and for scoring the trained model; null (the default) keeps libtorch's and ONNX Runtime's own choice.
    /// </summary>
    /// <remarks>
    /// Training sets libtorch's intra-op thread count (TorchSharp's <c>torch.set_num_threads</c>) for the duration of
    /// <c>Fit</c> and restores the previous value afterwards. libtorch's thread count is <b>process-wide</b>: while this
    /// trainer runs, every TorchSharp computation in the process (another <c>Fit</c> on another thread included) uses it.
    /// The returned model's ONNX Runtime session uses this many threads within an operator and between operators
    /// (<c>OnnxOptions.IntraOpNumThreads</c> and <c>InterOpNumThreads</c>); that setting belongs to the session, not the
    /// process. A model saved and loaded again scores with ONNX Runtime's default, as ML.NET does not persist it.
    /// </remarks>
    public int? NumberOfThreads { get; set; }

    /// <summary>
    /// Cancels training between optimizer steps (and, for sequence trainers, between layers) with an <see cref="OperationCanceledException"/>.
    /// Cancelling the <see cref="MLContext"/> the trainer came from (as AutoML does to stop a trial) stops training between steps too.
    /// </summary>
    public CancellationToken CancellationToken { get; set; }

    /// <summary>Receives a report after every step and epoch (a progress bar, say); may be null.</summary>
    public IProgress<TrainingProgress>? Progress { get; set; }

    /// <summary>
    /// A change to the loss while training: a term added to it (<c>Microsoft.ML.Hazy.Robustness.MaskPenaltyOptions</c>: RRR,
    /// GradMask or ActDiff with a mask column) or a reweighting of its rows (<c>Microsoft.ML.Hazy.Robustness.GroupDroOptions</c>:
    /// group DRO with a group column); null trains on the head's loss alone. The penalty reads its columns only
    /// when training: the trained model scores, saves and loads as without it.
    /// </summary>
    public TrainingPenaltyOptions? Penalty { get; set; }

    /// <summary>Sees every optimizer step (tests use it to follow the schedule and the loss across a network switch).</summary>
    internal Action<TrainingStep>? StepObserver { get; set; }

    /// <summary>A copy sharing every reference (validation set, parameter groups, progress) with this one.</summary>
    internal HazyTrainerOptions ShallowCopy() => (HazyTrainerOptions)MemberwiseClone();

    /// <summary>The trainer's check of its host (the MLContext's cancellation), set on the copy of the options one <c>Fit</c> uses.</summary>
    internal Action? CheckHost { get; set; }

    /// <summary>Throws <see cref="OperationCanceledException"/> when <see cref="CancellationToken"/> or the MLContext was cancelled.</summary>
    internal void ThrowIfCancelled()
    {
        CancellationToken.ThrowIfCancellationRequested();
        CheckHost?.Invoke();
    }

    /// <summary>A shallow copy for one run, checking <paramref name="checkHost"/> with the cancellation token.</summary>
    internal HazyTrainerOptions ForRun(Action? checkHost)
    {
        var copy = (HazyTrainerOptions)MemberwiseClone();
        copy.CheckHost = checkHost;
        return copy;
    }

    /// <summary>
    /// Checks every option, throwing an <see cref="ArgumentOutOfRangeException"/> that names the option and its value.
    /// Trainers call it when they are built; a derived class checks its own options after calling the base.
    /// </summary>
    internal virtual void Check()
    {
        Require(!string.IsNullOrWhiteSpace(LabelColumnName), nameof(LabelColumnName), LabelColumnName, "must name a column");
        Require(!string.IsNullOrWhiteSpace(FeatureColumnName), nameof(FeatureColumnName), FeatureColumnName, "must name a column");
        if (SizesToData)
        {
            Require(NumberOfEpochs >= 0, nameof(NumberOfEpochs), NumberOfEpochs, "must be positive, or 0 to size it to the data");
            Require(BatchSize >= 0, nameof(BatchSize), BatchSize, "must be positive, or 0 to size it to the data");
        }
        else
        {
            Require(NumberOfEpochs > 0, nameof(NumberOfEpochs), NumberOfEpochs, "must be positive");
            Require(BatchSize > 0, nameof(BatchSize), BatchSize, "must be positive");
        }
        TrainingBudget.Check(this);
        RequirePositive(LearningRate, nameof(LearningRate));
        RequireNonNegative(WeightDecay, nameof(WeightDecay));
        Require(Enum.IsDefined(Optimizer), nameof(Optimizer), Optimizer, "is not a HazyOptimizer");
        Require(Enum.IsDefined(Schedule), nameof(Schedule), Schedule, "is not a LearningRateSchedule");
        Require(WarmupFraction >= 0 && WarmupFraction <= 1, nameof(WarmupFraction), WarmupFraction, "must be within [0, 1]");
        Require(ParameterGroups is not null, nameof(ParameterGroups), null, "must not be null (leave it empty for no groups)");
        foreach (var g in ParameterGroups!)
        {
            Require(g is not null, nameof(ParameterGroups), null, "must not hold null groups");
            Require(g!.NamePrefix is not null, nameof(ParameterGroups), null, "must not hold a group with a null NamePrefix");
            if (g.LearningRate is double rate && (!(rate > 0) || !double.IsFinite(rate)))
                throw new ArgumentOutOfRangeException(nameof(ParameterGroups), rate, $"The LearningRate of parameter group '{g.NamePrefix}' must be a positive number.");
            if (g.WeightDecay is double decay && (!(decay >= 0) || !double.IsFinite(decay)))
                throw new ArgumentOutOfRangeException(nameof(ParameterGroups), decay, $"The WeightDecay of parameter group '{g.NamePrefix}' must be a non-negative number.");
        }
        Require(EarlyStoppingPatience >= 0, nameof(EarlyStoppingPatience), EarlyStoppingPatience, "must not be negative");
        Require(GradientClipNorm >= 0 && !double.IsPositiveInfinity(GradientClipNorm), nameof(GradientClipNorm), GradientClipNorm, "must be 0 (no clipping) or a positive number");
        Require(NumberOfThreads is null or > 0, nameof(NumberOfThreads), NumberOfThreads, "must be null (the runtime's default) or positive");
        Penalty?.Check();
    }

    /// <summary>Whether 0 epochs or batch size means "size it to the data" (the trainer resolves it when training starts).</summary>
    private protected virtual bool SizesToData => false;

    /// <summary>Throws an <see cref="ArgumentOutOfRangeException"/> for <paramref name="option"/> unless <paramref name="condition"/> holds.</summary>
    private protected static void Require(bool condition, string option, object? value, string rule)
    {
        if (!condition)
            throw new ArgumentOutOfRangeException(option, value, $"Options.{option} {rule}.");
    }

    /// <summary>Requires a positive, finite number.</summary>
    private protected static void RequirePositive(double value, string option) =>
        Require(value > 0 && double.IsFinite(value), option, value, "must be a positive number");

    /// <summary>Requires a non-negative, finite number.</summary>
    private protected static void RequireNonNegative(double value, string option) =>
        Require(value >= 0 && double.IsFinite(value), option, value, "must be a non-negative number");

    /// <summary>Requires a rate within [0, 1), such as a dropout probability.</summary>
    private protected static void RequireRate(double value, string option) =>
        Require(value >= 0 && value < 1, option, value, "must be within [0, 1)");
}
