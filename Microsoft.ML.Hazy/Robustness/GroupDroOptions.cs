using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Robustness;

/// <summary>
/// Group DRO (Sagawa et al., ICLR 2020, online algorithm) for any Hazy trainer, set as <see cref="HazyTrainerOptions.Penalty"/>:
/// instead of the mean loss the trainer minimises Σ_g q_g·L_g, where L_g is the mean loss of the batch's rows in group g and
/// the group weights q follow an exponentiated-gradient step q_g ← q_g·exp(η·L_g), renormalised, before every step. Groups with
/// high loss gain weight, so the worst group's accuracy improves at some cost to the average.
/// </summary>
/// <remarks>
/// The group column is a key (one value per group; <c>MapValueToKey</c> makes one from text or numbers). True groups come
/// from annotation; without them, pseudo-groups from clustering each class's embeddings (GEORGE, the recipe "Perfectly
/// Balanced" builds on) come from <c>mlContext.Hazy().Slicing.ProposeGroups</c>. A row with a missing key throws. Groups absent
/// from a batch have L_g = 0 in that step. With an example-weight column L_g is the group's weighted mean. The weights q
/// start uniform and live for one training run; the trained model scores, saves and loads as without this option.
/// </remarks>
public sealed class GroupDroOptions : TrainingPenaltyOptions
{
    /// <summary>Defaults of group DRO.</summary>
    public static class Defaults
    {
        /// <summary>The group column: "Group".</summary>
        public const string GroupColumnName = "Group";

        /// <summary>η, the group weights' step size: 0.01 (the value of Sagawa et al.'s reference code).</summary>
        public const double StepSize = 0.01;
    }

    /// <summary>The group column: a key with one value per group. Default <see cref="Defaults.GroupColumnName"/>.</summary>
    public string GroupColumnName { get; set; } = Defaults.GroupColumnName;

    /// <summary>η, the step size of the group weights' update (0 keeps them uniform: the mean of the group means). Default <see cref="Defaults.StepSize"/>.</summary>
    public double StepSize { get; set; } = Defaults.StepSize;

    internal const string GroupBatchColumn = "Robustness.Group";

    internal override void Check()
    {
        if (string.IsNullOrWhiteSpace(GroupColumnName))
            throw new ArgumentOutOfRangeException(nameof(GroupColumnName), GroupColumnName, "Options.Penalty.GroupColumnName must name a column.");
        if (!(StepSize >= 0 && double.IsFinite(StepSize)))
            throw new ArgumentOutOfRangeException(nameof(StepSize), StepSize, "Options.Penalty.StepSize must be a non-negative number.");
    }

    internal override (ITrainingObjective Objective, IReadOnlyList<BatchColumn> Columns) CreateObjective(
        ITrainingObjective supervised, OutputHead head, DataViewSchema schema, string featureColumn, int featureSize, int channels)
    {
        Check();
        const string expected = "a key with one value per group (use mlContext.Transforms.Conversion.MapValueToKey)";
        var column = schema.GetColumnOrNull(GroupColumnName)
            ?? throw new ArgumentOutOfRangeException(nameof(GroupColumnName), $"Column '{GroupColumnName}' (the group) not found; expected {expected}.");
        if (column.Type is not KeyDataViewType key || key.Count == 0 || key.Count > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(GroupColumnName), $"Column '{GroupColumnName}' (the group) has type {column.Type}; expected {expected}.");
        return (new GroupDroObjective(head, (int)key.Count, StepSize), new[] { new BatchColumn(GroupBatchColumn, GroupColumnName, BatchColumnKind.Key) });
    }
}

/// <summary>The online group-DRO objective: Σ_g q_g·L_g with q updated by exponentiated gradient before each step.</summary>
internal sealed class GroupDroObjective : ITrainingObjective, IDisposable
{
    private readonly OutputHead _head;
    private readonly double _stepSize;
    private Tensor _weights;

    public GroupDroObjective(OutputHead head, int groups, double stepSize)
    {
        _head = head;
        _stepSize = stepSize;
        Groups = groups;
        using var uniform = (1.0 / groups).ToScalar();
        _weights = torch.full(groups, uniform, ScalarType.Float64);
    }

    /// <summary>Number of groups.</summary>
    public int Groups { get; }

    /// <summary>The current group weights q (float64, sum 1).</summary>
    public double[] Weights => _weights.data<double>().ToArray();

    public Tensor Loss(Func<TensorBatch, Tensor> forward, TensorBatch batch)
    {
        if (!batch.TryGetColumn(GroupDroOptions.GroupBatchColumn, out var groups))
            throw new InvalidOperationException($"The batch has no '{GroupDroOptions.GroupBatchColumn}' column.");
        using var output = forward(batch);
        using var rows = _head.RowLosses(output, batch);
        using var scope = NewDisposeScope();
        var weights = batch.TryGetColumn(TensorBatch.ExampleWeight, out var w) ? w.to_type(rows.dtype) : torch.ones_like(rows);
        using var one = 1.ToScalar();
        var sums = torch.zeros(Groups, rows.dtype, rows.device).index_add(0, groups, rows.mul(weights), one);
        var counts = torch.zeros(Groups, rows.dtype, rows.device).index_add(0, groups, weights, one);
        using var tiny = 1e-12.ToScalar();
        var groupLoss = sums.div(counts.clamp_min(tiny));
        // q lives on the CPU in float64, outside every dispose scope (it persists across steps); the update reads the
        // detached group losses.
        using (no_grad())
        {
            using var eta = _stepSize.ToScalar();
            var step = groupLoss.detach().cpu().to_type(ScalarType.Float64).mul(eta).exp();
            var updated = _weights.mul(step);
            updated.div_(updated.sum());
            _weights = ReplaceWith(_weights, updated.DetachFromDisposeScope());
        }
        var q = _weights.to(rows.dtype, rows.device);
        return q.mul(groupLoss).sum().MoveToOuterDisposeScope();
    }

    private static Tensor ReplaceWith(Tensor old, Tensor replacement)
    {
        old.Dispose();
        return replacement;
    }

    public void Dispose() => _weights.Dispose();
}
