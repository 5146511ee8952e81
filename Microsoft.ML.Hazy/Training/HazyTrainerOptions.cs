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
    public string NamePrefix = "";

    /// <summary>The group's learning rate; null takes the trainer's.</summary>
    public double? LearningRate;

    /// <summary>The group's weight decay; null takes the trainer's.</summary>
    public double? WeightDecay;

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
public abstract class HazyTrainerOptions
{
    /// <summary>The label column.</summary>
    public string LabelColumnName = DefaultColumnNames.Label;

    /// <summary>The feature column: a known-size vector of <see cref="float"/>.</summary>
    public string FeatureColumnName = DefaultColumnNames.Features;

    /// <summary>Passes over the training data.</summary>
    public int NumberOfEpochs = 10;

    /// <summary>Rows per optimizer step.</summary>
    public int BatchSize = 64;

    /// <summary>Peak learning rate.</summary>
    public double LearningRate = 1e-3;

    /// <summary>Weight decay (decoupled for AdamW).</summary>
    public double WeightDecay = 1e-4;

    /// <summary>The optimizer.</summary>
    public HazyOptimizer Optimizer = HazyOptimizer.AdamW;

    /// <summary>The learning-rate schedule.</summary>
    public LearningRateSchedule Schedule = LearningRateSchedule.Cosine;

    /// <summary>Fraction of all steps spent warming the learning rate up linearly from zero.</summary>
    public double WarmupFraction = 0.0;

    /// <summary>Parameter groups with their own learning rate and weight decay; other parameters use the trainer's.</summary>
    public List<ParameterGroupOptions> ParameterGroups = new();

    /// <summary>Data scored after every epoch; its loss drives early stopping.</summary>
    public IDataView? ValidationSet;

    /// <summary>Stop after this many epochs without a lower validation loss and keep the best weights; 0 disables.</summary>
    public int EarlyStoppingPatience;

    /// <summary>Clip the gradients' global norm to this value; 0 disables.</summary>
    public double GradientClipNorm;

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
    public int? Seed;

    /// <summary>Cancels training between optimizer steps (and, for sequence trainers, between layers) with an <see cref="OperationCanceledException"/>.</summary>
    public CancellationToken CancellationToken;

    /// <summary>Receives a report after every step and epoch (a progress bar, say); may be null.</summary>
    public IProgress<TrainingProgress>? Progress;

    /// <summary>Sees every optimizer step (tests use it to follow the schedule and the loss across a network switch).</summary>
    internal Action<TrainingStep>? StepObserver;

    /// <summary>A copy sharing every reference (validation set, parameter groups, progress) with this one.</summary>
    internal HazyTrainerOptions ShallowCopy() => (HazyTrainerOptions)MemberwiseClone();
}

/// <summary>ML.NET's default column names (ML.NET keeps its own constants internal).</summary>
public static class DefaultColumnNames
{
    /// <summary>"Label".</summary>
    public const string Label = "Label";
    /// <summary>"Features".</summary>
    public const string Features = "Features";
    /// <summary>"Score".</summary>
    public const string Score = "Score";
    /// <summary>"Probability".</summary>
    public const string Probability = "Probability";
    /// <summary>"PredictedLabel".</summary>
    public const string PredictedLabel = "PredictedLabel";
}
