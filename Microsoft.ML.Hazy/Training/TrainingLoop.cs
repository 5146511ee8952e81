using System.Diagnostics;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Training;

/// <summary>One epoch's numbers.</summary>
internal sealed record EpochSummary(int Epoch, double TrainLoss, double? ValidationLoss, double? ValidationMetric, double Seconds);

/// <summary>What a training run did.</summary>
internal sealed record TrainingSummary(IReadOnlyList<EpochSummary> Epochs, int BestEpoch, bool StoppedEarly, double Seconds);

/// <summary>
/// Epochs <paramref name="FirstEpoch"/> to <paramref name="LastEpoch"/> of a run of <see cref="HazyTrainerOptions.NumberOfEpochs"/>
/// epochs: the learning-rate schedule and the shuffling are those of the whole run, so consecutive phases (with a network
/// switch between them) follow one schedule.
/// </summary>
internal readonly record struct TrainingPhase(int FirstEpoch, int LastEpoch);

/// <summary>One optimizer step as the loop took it: the global step from 0, the schedule's factor and the batch's loss.</summary>
internal readonly record struct TrainingStep(long Step, double LearningRateFactor, double Loss);

/// <summary>
/// The training loop every Hazy trainer uses: shuffled mini-batches, an optimizer with parameter groups,
/// warm-up and cosine schedule per step, gradient clipping, validation and early stopping with the best
/// weights restored, progress to <see cref="MLContext.Log"/> and <see cref="HazyTrainerOptions.Progress"/>,
/// and cancellation between steps. The training loss comes from an <see cref="ITrainingObjective"/> (which runs the
/// forward pass itself); the validation loss and metric from an <see cref="IValidationMetric"/> (the task's head) under no_grad.
/// </summary>
internal static class TrainingLoop
{
    public static TrainingSummary Run(
        nn.Module model,
        Func<TensorBatch, Tensor> forward,
        ITrainingObjective objective,
        IValidationMetric metric,
        DataViewBatcher train,
        DataViewBatcher? validation,
        HazyTrainerOptions options,
        int seed,
        Device device,
        IChannel channel,
        TrainingPhase? phase = null,
        ParameterOptimizer? optimizer = null)
    {
        Validate(options);
        var (firstEpoch, lastEpoch) = phase ?? new TrainingPhase(1, options.NumberOfEpochs);
        if (firstEpoch < 1 || firstEpoch > lastEpoch || lastEpoch > options.NumberOfEpochs)
            throw new ArgumentOutOfRangeException(nameof(phase), $"Epochs {firstEpoch} to {lastEpoch} are not a phase of {options.NumberOfEpochs} epochs.");
        long rows = train.CountRows();
        if (rows == 0)
            throw new InvalidOperationException("The training data is empty: no rows to train on.");
        int batchSize = (int)Math.Min(options.BatchSize, rows);
        int stepsPerEpoch = (int)((rows + batchSize - 1) / batchSize);
        long totalSteps = (long)stepsPerEpoch * options.NumberOfEpochs;
        long warmupSteps = (long)Math.Round(options.WarmupFraction * totalSteps);

        using var owned = optimizer is null ? CreateOptimizer(model, options, channel) : null;
        optimizer ??= owned!;
        var parameters = model.parameters().ToArray();

        var history = new List<EpochSummary>();
        var clock = Stopwatch.StartNew();
        double bestLoss = double.PositiveInfinity;
        int bestEpoch = 0, sinceBest = 0;
        Dictionary<string, Tensor>? bestWeights = null;
        bool stoppedEarly = false;
        long step = (long)(firstEpoch - 1) * stepsPerEpoch;
        try
        {
            for (int epoch = firstEpoch; epoch <= lastEpoch; epoch++)
            {
                var epochClock = Stopwatch.StartNew();
                model.train();
                double lossSum = 0;
                long seen = 0;
                int stepInEpoch = 0;
                foreach (var batch in train.GetBatches(batchSize, seed + epoch, device))
                {
                    options.ThrowIfCancelled();
                    using var scope = NewDisposeScope();
                    using var _ = batch;
                    double factor = LearningRateFactor(step, warmupSteps, totalSteps, options.Schedule);
                    foreach (var group in optimizer.Groups)
                        group.LearningRate = group.BaseLearningRate * factor;
                    optimizer.ZeroGrad();
                    var loss = objective.Loss(forward, batch);
                    loss.backward();
                    if (options.GradientClipNorm > 0)
                        nn.utils.clip_grad_norm_(parameters, options.GradientClipNorm);
                    optimizer.Step();
                    double l = loss.item<float>();
                    if (!double.IsFinite(l))
                        throw new InvalidOperationException($"The training loss became {l} at epoch {epoch}, step {stepInEpoch + 1}; {NonFiniteLossAdvice(batch, step)}");
                    options.StepObserver?.Invoke(new TrainingStep(step, factor, l));
                    lossSum += l * batch.Count;
                    seen += batch.Count;
                    step++;
                    stepInEpoch++;
                    options.Progress?.Report(new TrainingProgress(epoch, options.NumberOfEpochs, stepInEpoch, stepsPerEpoch,
                        lossSum / seen, null, null, metric.MetricName, false, clock.Elapsed));
                }

                double trainLoss = lossSum / Math.Max(1, seen);
                double? validLoss = null, validMetric = null;
                if (validation != null)
                {
                    (validLoss, validMetric) = Evaluate(model, forward, metric, validation, batchSize, device);
                    if (validLoss < bestLoss)
                    {
                        bestLoss = validLoss.Value;
                        bestEpoch = epoch;
                        sinceBest = 0;
                        if (options.EarlyStoppingPatience > 0)
                        {
                            DisposeAll(bestWeights);
                            bestWeights = Snapshot(model);
                        }
                    }
                    else
                    {
                        sinceBest++;
                    }
                }
                else
                {
                    bestEpoch = epoch;
                }
                history.Add(new EpochSummary(epoch, trainLoss, validLoss, validMetric, epochClock.Elapsed.TotalSeconds));
                channel.Info(MessageSensitivity.None,
                    $"Epoch {epoch}/{options.NumberOfEpochs}: train loss {trainLoss:G5}" +
                    (validLoss is double vl ? $", validation loss {vl:G5}, validation {metric.MetricName} {validMetric:G5}" : "") +
                    $" ({epochClock.Elapsed.TotalSeconds:F1} s)");
                options.Progress?.Report(new TrainingProgress(epoch, options.NumberOfEpochs, stepInEpoch, stepsPerEpoch,
                    trainLoss, validLoss, validMetric, metric.MetricName, true, clock.Elapsed));

                if (options.EarlyStoppingPatience > 0 && validation != null && sinceBest >= options.EarlyStoppingPatience)
                {
                    stoppedEarly = epoch < lastEpoch;
                    channel.Info(MessageSensitivity.None,
                        $"Early stopping after epoch {epoch}: no lower validation loss for {sinceBest} epoch(s); keeping epoch {bestEpoch}.");
                    break;
                }
            }
            if (bestWeights != null)
                model.load_state_dict(bestWeights);
        }
        finally
        {
            DisposeAll(bestWeights);
        }
        model.eval();
        return new TrainingSummary(history, bestEpoch, stoppedEarly, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Mean loss and the metric over a whole data set, without gradients.</summary>
    public static (double Loss, double Metric) Evaluate(nn.Module model, Func<TensorBatch, Tensor> forward,
        IValidationMetric metric, DataViewBatcher data, int batchSize, Device device)
    {
        bool wasTraining = model.training;
        model.eval();
        double lossSum = 0, metricSum = 0;
        long n = 0;
        using (no_grad())
        {
            foreach (var batch in data.GetBatches(batchSize, null, device))
            {
                using var scope = NewDisposeScope();
                using var _ = batch;
                var output = forward(batch);
                lossSum += metric.Loss(output, batch).item<float>() * batch.Count;
                metricSum += metric.MetricSum(output, batch);
                n += batch.Count;
            }
        }
        if (wasTraining)
            model.train();
        if (n == 0)
            throw new InvalidOperationException("The validation data is empty.");
        return (lossSum / n, metric.FinishMetric(metricSum, n));
    }

    /// <summary>Linear warm-up to 1, then constant or half-cosine decay to 0 at the last step.</summary>
    public static double LearningRateFactor(long step, long warmupSteps, long totalSteps, LearningRateSchedule schedule)
    {
        if (step < warmupSteps)
            return (step + 1.0) / warmupSteps;
        if (schedule == LearningRateSchedule.Constant || totalSteps <= warmupSteps)
            return 1.0;
        double progress = (double)(step - warmupSteps) / (totalSteps - warmupSteps);
        return 0.5 * (1 + Math.Cos(Math.PI * progress));
    }

    /// <summary>Assigns each named parameter to the first group whose prefix matches; the rest form the default group.</summary>
    public static ParameterOptimizer CreateOptimizer(nn.Module model, HazyTrainerOptions options, IChannel? channel = null)
    {
        var buckets = options.ParameterGroups.Select(_ => new List<Parameter>()).ToList();
        var rest = new List<Parameter>();
        foreach (var (name, p) in model.named_parameters())
        {
            if (!p.requires_grad)
                continue;
            int g = options.ParameterGroups.FindIndex(o => o.Matches(name));
            (g >= 0 ? buckets[g] : rest).Add(p);
        }
        var groups = new List<ParameterGroup>();
        if (rest.Count > 0)
            groups.Add(new ParameterGroup("default", rest, options.LearningRate, options.WeightDecay));
        for (int i = 0; i < buckets.Count; i++)
        {
            if (buckets[i].Count == 0)
                continue;
            var o = options.ParameterGroups[i];
            groups.Add(new ParameterGroup($"'{o.NamePrefix}*'", buckets[i], o.LearningRate ?? options.LearningRate, o.WeightDecay ?? options.WeightDecay));
        }
        if (groups.Count == 0)
            throw new InvalidOperationException("The model has no trainable parameters.");
        foreach (var g in groups)
            channel?.Trace(MessageSensitivity.None, $"Parameter group {g.Name}: {g.Parameters.Count} tensors, lr {g.BaseLearningRate}, weight decay {g.WeightDecay}");
        return new ParameterOptimizer(options.Optimizer, groups);
    }

    private static void Validate(HazyTrainerOptions o)
    {
        if (o.NumberOfEpochs <= 0)
            throw new ArgumentOutOfRangeException(nameof(o.NumberOfEpochs), o.NumberOfEpochs, "NumberOfEpochs must be positive.");
        if (o.BatchSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(o.BatchSize), o.BatchSize, "BatchSize must be positive.");
        if (!(o.LearningRate > 0) || !double.IsFinite(o.LearningRate))
            throw new ArgumentOutOfRangeException(nameof(o.LearningRate), o.LearningRate, "LearningRate must be a positive number.");
        if (!(o.WeightDecay >= 0) || !double.IsFinite(o.WeightDecay))
            throw new ArgumentOutOfRangeException(nameof(o.WeightDecay), o.WeightDecay, "WeightDecay must be a non-negative number.");
        foreach (var g in o.ParameterGroups)
        {
            if (g.WeightDecay is double decay && (!(decay >= 0) || !double.IsFinite(decay)))
                throw new ArgumentOutOfRangeException(nameof(o.ParameterGroups), decay, $"The WeightDecay of parameter group '{g.NamePrefix}' must be a non-negative number.");
        }
        if (!(o.GradientClipNorm >= 0))
            throw new ArgumentOutOfRangeException(nameof(o.GradientClipNorm), o.GradientClipNorm, "GradientClipNorm must be 0 (no clipping) or a positive number.");
        if (!(o.WarmupFraction >= 0 && o.WarmupFraction <= 1))
            throw new ArgumentOutOfRangeException(nameof(o.WarmupFraction), o.WarmupFraction, "WarmupFraction must be within [0, 1].");
        if (o.EarlyStoppingPatience < 0)
            throw new ArgumentOutOfRangeException(nameof(o.EarlyStoppingPatience), o.EarlyStoppingPatience, "EarlyStoppingPatience must not be negative.");
    }

    /// <summary>
    /// What to do about a loss that is not finite. A floating-point label whose square overflows float32 makes the
    /// squared error infinite whatever the weights; a loss that is not finite before the first update does not come
    /// from the learning rate either; otherwise the updates diverged.
    /// </summary>
    private static string NonFiniteLossAdvice(TensorBatch batch, long step)
    {
        double? largest = batch.Labels is { } y && y.is_floating_point() ? y.abs().max().item<float>() : null;
        string labels = FormattableString.Invariant($"the largest |label| in the batch is {largest:G3}");
        if (largest * largest > float.MaxValue)
            return $"{labels}, whose square overflows float32: normalise the label (for example with NormalizeMeanVariance) and scale the predictions back.";
        if (step == 0)
            return "the loss was not finite before any update, so the learning rate is not the cause; check the scale of the features"
                + (largest is null ? "." : $" and labels ({labels}).");
        return "lower the learning rate.";
    }

    private static Dictionary<string, Tensor> Snapshot(nn.Module model)
    {
        var snapshot = new Dictionary<string, Tensor>();
        foreach (var (name, value) in model.state_dict())
        {
            using var detached = value.detach();
            snapshot[name] = detached.clone().DetachFromDisposeScope();
        }
        return snapshot;
    }

    private static void DisposeAll(Dictionary<string, Tensor>? tensors)
    {
        if (tensors == null)
            return;
        foreach (var t in tensors.Values)
            t.Dispose();
    }
}
