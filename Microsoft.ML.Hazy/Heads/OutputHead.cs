using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Heads;

/// <summary>
/// The validation side of a task: a loss and a metric computed from the network's output on a batch, without gradients.
/// The training loop reports it after every epoch and stops early on its loss; it is separate from the training objective.
/// </summary>
internal interface IValidationMetric
{
    /// <summary>The metric's name in logs and progress reports ("accuracy", "RMSE").</summary>
    string MetricName { get; }

    /// <summary>Whether a higher metric is better (accuracy) or a lower one (RMSE).</summary>
    bool HigherIsBetter { get; }

    /// <summary>Mean loss of a batch (weighted when the batch carries example weights).</summary>
    Tensor Loss(Tensor output, TensorBatch batch);

    /// <summary>The metric's per-batch sum (correct predictions, squared errors).</summary>
    double MetricSum(Tensor output, TensorBatch batch);

    /// <summary>The metric over a whole set from its sum and the row count.</summary>
    double FinishMetric(double sum, long rows);
}

/// <summary>
/// Everything a task means, in one place: how the label column is read and checked, the loss and the validation metric,
/// the outputs appended to the exported ONNX graph and the ML.NET columns after the <c>OnnxTransformer</c> (with their key
/// values). Trainers, the ONNX bridge, the prediction transformer and the streaming predictor ask the head; only
/// <see cref="For"/> maps a <see cref="PredictionKind"/> to a head.
/// </summary>
internal abstract class OutputHead : IScoringOutputs, IValidationMetric
{
    /// <summary>The task, as the public API describes it.</summary>
    public abstract PredictionKind Kind { get; }

    /// <summary>The width of the network's output, [B, Outputs].</summary>
    public abstract int Outputs { get; }

    /// <summary>How the label column is read into a batch; null for a head that reads no label.</summary>
    public abstract LabelKind? Label { get; }

    /// <summary>The label type this head expects, for error messages ("a key type ...").</summary>
    public abstract string ExpectedLabel { get; }

    /// <summary>The key values of the label (multiclass), else null.</summary>
    public virtual LabelKeyValues? LabelKeys => null;

    /// <summary>Whether a label column of this schema shape fits the head (checked before training).</summary>
    public abstract bool AcceptsLabel(SchemaShape.Column label);

    /// <summary>The head for the training data's label column: a multiclass head reads the key values; others return themselves.</summary>
    public virtual OutputHead ForTrainingLabel(DataViewSchema.Column label) => this;

    /// <summary>A stand-in head for the output schema before training (two classes of the label's value type for multiclass).</summary>
    public virtual OutputHead ForSchemaLabel(SchemaShape.Column label) => this;

    /// <summary>Checks the training labels (at least two classes for a classifier).</summary>
    public virtual void CheckTrainingLabels(IDataView data, DataViewSchema.Column label)
    {
    }

    /// <summary>Checks that a validation set's label matches the training label (the same classes).</summary>
    public virtual void CheckValidationLabel(DataViewSchema.Column label)
    {
    }

    /// <inheritdoc/>
    public abstract string MetricName { get; }

    /// <inheritdoc/>
    public abstract bool HigherIsBetter { get; }

    /// <summary>The loss of each row, [B], from the output and the labels.</summary>
    protected abstract Tensor RowLoss(Tensor output, Tensor labels);

    /// <summary>The loss of each row of <paramref name="batch"/>, [B], unweighted (objectives that combine rows their own way).</summary>
    internal Tensor RowLosses(Tensor output, TensorBatch batch) =>
        RowLoss(output, batch.Labels ?? throw new InvalidOperationException($"The {Kind} head needs a label column in the batch."));

    /// <summary>
    /// The batch's mean loss; with an example-weight column (<see cref="TensorBatch.ExampleWeight"/>) the weighted mean
    /// Σ wᵢ·lᵢ / Σ wᵢ, so a weight of 0 removes a row and a weight of 2 counts it twice.
    /// </summary>
    public Tensor Loss(Tensor output, TensorBatch batch)
    {
        var labels = batch.Labels ?? throw new InvalidOperationException($"The {Kind} head needs a label column in the batch.");
        using var rows = RowLoss(output, labels);
        if (!batch.TryGetColumn(TensorBatch.ExampleWeight, out var weights))
            return rows.mean();
        using var weighted = rows.mul(weights);
        using var total = weighted.sum();
        using var weightSum = weights.sum();
        using var tiny = 1e-12.ToScalar();
        using var denominator = weightSum.clamp_min(tiny);
        return total.div(denominator);
    }

    /// <inheritdoc/>
    public abstract double MetricSum(Tensor output, TensorBatch batch);

    /// <inheritdoc/>
    public virtual double FinishMetric(double sum, long rows) => sum / rows;

    /// <summary>The model's <c>Score</c> (or embedding) as TorchSharp computes it from the network's output, [B, W].</summary>
    public virtual Tensor Score(Tensor output) => output.alias();

    /// <inheritdoc/>
    public abstract string GraphName { get; }

    /// <inheritdoc/>
    public abstract void AddOutputs(OnnxGraphBuilder g, string y, bool batched);

    /// <inheritdoc/>
    public abstract string[] RowOutputs { get; }

    /// <inheritdoc/>
    public abstract IEstimator<ITransformer> AppendColumns(MLContext ml, IEstimator<ITransformer> onnx);

    /// <summary>The head of a supervised task; <paramref name="labels"/> are the multiclass label's key values (null for a schema-only head).</summary>
    public static OutputHead For(PredictionKind kind, LabelKeyValues? labels = null) => kind switch
    {
        PredictionKind.MulticlassClassification => new MulticlassHead(labels),
        PredictionKind.BinaryClassification => new BinaryHead(),
        PredictionKind.Regression => new RegressionHead(),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind,
            $"{kind} has no default head: an embedding head needs its size (EmbeddingHead)."),
    };

    /// <summary>Per row the graph's outputs drop the batch axis; batched they keep it.</summary>
    protected static string Row(OnnxGraphBuilder g, string v, bool batched) => batched ? v : g.Node("Squeeze", new[] { v, g.Int64s(0) });

    /// <summary>The output's dimensions: [width] per row, [batch, width] batched.</summary>
    protected static long?[] Dims(long? width, bool batched) => batched ? new long?[] { null, width } : new long?[] { width };
}
