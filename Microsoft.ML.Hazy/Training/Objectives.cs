using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Training;

/// <summary>The loss and validation metric of each prediction task.</summary>
internal static class Objectives
{
    public static ITrainingObjective For(PredictionKind kind) => kind switch
    {
        PredictionKind.MulticlassClassification => new Multiclass(),
        PredictionKind.BinaryClassification => new Binary(),
        _ => new Regression(),
    };

    /// <summary>Cross-entropy over the logits; accuracy.</summary>
    private sealed class Multiclass : ITrainingObjective
    {
        public string MetricName => "accuracy";

        public Tensor Loss(Tensor output, TensorBatch batch) => nn.functional.cross_entropy(output, batch.Labels!);

        public double MetricSum(Tensor output, TensorBatch batch) =>
            output.argmax(1).eq(batch.Labels!).sum().item<long>();

        public double FinishMetric(double sum, long rows) => sum / rows;
    }

    /// <summary>Binary cross-entropy on the logit; accuracy at probability 0.5.</summary>
    private sealed class Binary : ITrainingObjective
    {
        public string MetricName => "accuracy";

        public Tensor Loss(Tensor output, TensorBatch batch) =>
            nn.functional.binary_cross_entropy_with_logits(output.squeeze(1), batch.Labels!);

        public double MetricSum(Tensor output, TensorBatch batch)
        {
            using var zero = 0.0.ToScalar();
            using var half = 0.5.ToScalar();
            return output.squeeze(1).gt(zero).eq(batch.Labels!.gt(half)).sum().item<long>();
        }

        public double FinishMetric(double sum, long rows) => sum / rows;
    }

    /// <summary>Mean squared error; root mean squared error.</summary>
    private sealed class Regression : ITrainingObjective
    {
        public string MetricName => "RMSE";

        public Tensor Loss(Tensor output, TensorBatch batch) => nn.functional.mse_loss(output.squeeze(1), batch.Labels!);

        public double MetricSum(Tensor output, TensorBatch batch)
        {
            using var two = 2.ToScalar();
            return (output.squeeze(1) - batch.Labels!).pow(two).sum().item<float>();
        }

        public double FinishMetric(double sum, long rows) => Math.Sqrt(sum / rows);
    }
}
