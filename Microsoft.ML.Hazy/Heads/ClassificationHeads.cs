using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Heads;

/// <summary>
/// Multiclass classification: a key label, cross-entropy over the logits, accuracy; outputs <c>Score</c> (the softmax
/// probabilities) and <c>PredictedLabel</c> (a key with the training label's values).
/// </summary>
internal sealed class MulticlassHead : OutputHead
{
    private readonly LabelKeyValues? _labels;

    public MulticlassHead(LabelKeyValues? labels) => _labels = labels;

    public override PredictionKind Kind => PredictionKind.MulticlassClassification;

    public override int Outputs => Keys.Count;

    public override LabelKind? Label => LabelKind.Key;

    public override string ExpectedLabel => "a key type (use MapValueToKey on the label)";

    public override LabelKeyValues? LabelKeys => _labels;

    private LabelKeyValues Keys => _labels ?? throw new InvalidOperationException("The multiclass head has not read the label's key values.");

    public override bool AcceptsLabel(SchemaShape.Column label) => label.IsKey && label.Kind == SchemaShape.Column.VectorKind.Scalar;

    public override OutputHead ForTrainingLabel(DataViewSchema.Column label) => new MulticlassHead(LabelKeyValues.FromColumn(label));

    public override OutputHead ForSchemaLabel(SchemaShape.Column label)
    {
        // The key count and values are unknown before Fit; only the value type shapes the output schema.
        Type? valueType = null;
        foreach (var a in label.Annotations)
        {
            if (a.Name == "KeyValues")
                valueType = a.ItemType is TextDataViewType ? typeof(string) : a.ItemType.RawType;
        }
        return new MulticlassHead(LabelKeyValues.Placeholder(valueType));
    }

    public override void CheckTrainingLabels(IDataView data, DataViewSchema.Column label)
    {
        if (Keys.Count < 2)
            throw new ArgumentOutOfRangeException(nameof(data), $"Column '{label.Name}' has {Keys.Count} class; expected at least 2 classes.");
        var seen = new HashSet<uint>();
        using var cursor = data.GetRowCursor(new[] { label });
        var getter = cursor.GetGetter<uint>(label);
        uint v = 0;
        while (cursor.MoveNext() && seen.Count < 2)
        {
            getter(ref v);
            seen.Add(v);
        }
        if (seen.Count == 1)
            throw new ArgumentOutOfRangeException(nameof(data), $"Column '{label.Name}' has a single class in the training data; expected at least 2 classes.");
    }

    public override void CheckValidationLabel(DataViewSchema.Column label)
    {
        if (LabelKeyValues.FromColumn(label).Count != Keys.Count)
            throw new ArgumentOutOfRangeException("options",
                $"Column '{label.Name}' of the validation set has a different number of classes than the training data; map both with the same MapValueToKey transformer.");
    }

    public override string MetricName => "accuracy";

    public override bool HigherIsBetter => true;

    protected override Tensor RowLoss(Tensor output, Tensor labels) => nn.functional.cross_entropy(output, labels, reduction: nn.Reduction.None);

    public override double MetricSum(Tensor output, TensorBatch batch)
    {
        using var predicted = output.argmax(1);
        using var correct = predicted.eq(batch.Labels!);
        using var count = correct.sum();
        return count.item<long>();
    }

    public override Tensor Score(Tensor output) => nn.functional.softmax(output, 1);

    public override string GraphName => "multiclassclassification";

    public override void AddOutputs(OnnxGraphBuilder g, string y, bool batched)
    {
        g.AddOutput(Row(g, g.Node("Softmax", new[] { y }, OnnxAttribute.Int("axis", 1)), batched), DefaultColumnNames.Score, OnnxElementType.Float, Dims(Outputs, batched));
        g.AddOutput(Row(g, g.Node("ArgMax", new[] { y }, OnnxAttribute.Int("axis", 1), OnnxAttribute.Int("keepdims", 1)), batched),
            batched ? DefaultColumnNames.PredictedLabel : ScalarColumns.PredictedVector, OnnxElementType.Int64, Dims(1, batched));
    }

    public override string[] RowOutputs => new[] { DefaultColumnNames.Score, ScalarColumns.PredictedVector };

    public override IEstimator<ITransformer> AppendColumns(MLContext ml, IEstimator<ITransformer> onnx) =>
        onnx.Append(OnnxScoringBridge.PredictedKey(ml, Keys));
}

/// <summary>
/// Binary classification: a Boolean label, binary cross-entropy on the logit, accuracy at probability 0.5; outputs
/// <c>Score</c> (the logit), <c>Probability</c> and <c>PredictedLabel</c> (Boolean).
/// </summary>
internal sealed class BinaryHead : OutputHead
{
    public override PredictionKind Kind => PredictionKind.BinaryClassification;

    public override int Outputs => 1;

    public override LabelKind? Label => LabelKind.Boolean;

    public override string ExpectedLabel => "Boolean";

    public override bool AcceptsLabel(SchemaShape.Column label) =>
        label.ItemType == BooleanDataViewType.Instance && label.Kind == SchemaShape.Column.VectorKind.Scalar;

    public override void CheckTrainingLabels(IDataView data, DataViewSchema.Column label)
    {
        var seen = new HashSet<bool>();
        using var cursor = data.GetRowCursor(new[] { label });
        var getter = cursor.GetGetter<bool>(label);
        bool v = false;
        while (cursor.MoveNext() && seen.Count < 2)
        {
            getter(ref v);
            seen.Add(v);
        }
        if (seen.Count == 1)
            throw new ArgumentOutOfRangeException(nameof(data), $"Column '{label.Name}' has a single class in the training data; expected at least 2 classes.");
    }

    public override string MetricName => "accuracy";

    public override bool HigherIsBetter => true;

    protected override Tensor RowLoss(Tensor output, Tensor labels)
    {
        using var logit = output.squeeze(1);
        return nn.functional.binary_cross_entropy_with_logits(logit, labels, reduction: nn.Reduction.None);
    }

    public override double MetricSum(Tensor output, TensorBatch batch)
    {
        using var zero = 0.0.ToScalar();
        using var half = 0.5.ToScalar();
        using var logit = output.squeeze(1);
        using var predicted = logit.gt(zero);
        using var truth = batch.Labels!.gt(half);
        using var correct = predicted.eq(truth);
        using var count = correct.sum();
        return count.item<long>();
    }

    public override string GraphName => "binaryclassification";

    public override void AddOutputs(OnnxGraphBuilder g, string y, bool batched)
    {
        g.AddOutput(Row(g, y, batched), batched ? DefaultColumnNames.Score : ScalarColumns.ScoreVector, OnnxElementType.Float, Dims(1, batched));
        g.AddOutput(Row(g, g.Node("Sigmoid", new[] { y }), batched), batched ? DefaultColumnNames.Probability : ScalarColumns.ProbabilityVector, OnnxElementType.Float, Dims(1, batched));
        g.AddOutput(Row(g, g.Node("Greater", new[] { y, g.Scalar(0f) }), batched), batched ? DefaultColumnNames.PredictedLabel : ScalarColumns.PredictedVector, OnnxElementType.Bool, Dims(1, batched));
    }

    public override string[] RowOutputs => new[] { ScalarColumns.ScoreVector, ScalarColumns.ProbabilityVector, ScalarColumns.PredictedVector };

    public override IEstimator<ITransformer> AppendColumns(MLContext ml, IEstimator<ITransformer> onnx) =>
        onnx.Append(ml.Transforms.CustomMapping<BinaryOnnxOutput, BinaryScalars>(ScalarColumns.Binary, ScalarColumns.BinaryContract))
            .Append(ml.Transforms.DropColumns(ScalarColumns.ScoreVector, ScalarColumns.ProbabilityVector, ScalarColumns.PredictedVector));
}

/// <summary>Regression: a Single label, mean squared error, RMSE; outputs <c>Score</c> (Single).</summary>
internal sealed class RegressionHead : OutputHead
{
    public override PredictionKind Kind => PredictionKind.Regression;

    public override int Outputs => 1;

    public override LabelKind? Label => LabelKind.Single;

    public override string ExpectedLabel => "Single";

    public override bool AcceptsLabel(SchemaShape.Column label) =>
        label.ItemType == NumberDataViewType.Single && label.Kind == SchemaShape.Column.VectorKind.Scalar;

    public override string MetricName => "RMSE";

    public override bool HigherIsBetter => false;

    protected override Tensor RowLoss(Tensor output, Tensor labels)
    {
        using var prediction = output.squeeze(1);
        return nn.functional.mse_loss(prediction, labels, reduction: nn.Reduction.None);
    }

    public override double MetricSum(Tensor output, TensorBatch batch)
    {
        using var two = 2.ToScalar();
        using var prediction = output.squeeze(1);
        using var error = prediction.sub(batch.Labels!);
        using var squared = error.pow(two);
        using var sum = squared.sum();
        return sum.item<float>();
    }

    public override double FinishMetric(double sum, long rows) => Math.Sqrt(sum / rows);

    public override string GraphName => "regression";

    public override void AddOutputs(OnnxGraphBuilder g, string y, bool batched) =>
        g.AddOutput(Row(g, y, batched), batched ? DefaultColumnNames.Score : ScalarColumns.ScoreVector, OnnxElementType.Float, Dims(1, batched));

    public override string[] RowOutputs => new[] { ScalarColumns.ScoreVector };

    public override IEstimator<ITransformer> AppendColumns(MLContext ml, IEstimator<ITransformer> onnx) =>
        onnx.Append(ml.Transforms.CustomMapping<RegressionOnnxOutput, RegressionScalars>(ScalarColumns.Regression, ScalarColumns.RegressionContract))
            .Append(ml.Transforms.DropColumns(ScalarColumns.ScoreVector));
}
