using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Tests.Mlp;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Training;

/// <summary>An objective sees the forward pass: here the head's loss plus λ·mean‖∂loss/∂x‖², differentiated with create_graph.</summary>
internal sealed class InputGradientPenalty : ITrainingObjective
{
    private readonly OutputHead _head;
    private readonly double _lambda;

    public InputGradientPenalty(OutputHead head, double lambda)
    {
        _head = head;
        _lambda = lambda;
    }

    public static Tensor Penalty(Func<TensorBatch, Tensor> forward, TensorBatch batch, OutputHead head, out Tensor loss)
    {
        var x = batch.Features.detach().requires_grad_(true);
        using var view = batch.WithFeatures(x);
        loss = head.Loss(forward(view), view);
        var grad = torch.autograd.grad(new[] { loss }, new[] { x }, retain_graph: true, create_graph: true)[0];
        // Per-row input gradients of the batch mean: scale by B so the penalty does not shrink with the batch size.
        using var scale = ((double)batch.Count).ToScalar();
        using var two = 2.ToScalar();
        return grad.mul(scale).pow(two).sum(1).mean();
    }

    public Tensor Loss(Func<TensorBatch, Tensor> forward, TensorBatch batch)
    {
        var penalty = Penalty(forward, batch, _head, out var loss);
        using var lambda = _lambda.ToScalar();
        return loss.add(penalty, lambda);
    }
}

public sealed class ObjectiveTests
{
    private static MlpTrainer.Options Options(int epochs) => new()
    {
        HiddenLayers = new[] { 16 },
        Activation = MlpActivation.Gelu,
        DropoutRate = 0,
        NumberOfEpochs = epochs,
        BatchSize = 32,
        LearningRate = 1e-2,
        Seed = 3,
    };

    [Test]
    public void DoubleBackwardGradientOfThePenaltyMatchesFiniteDifferences()
    {
        // The penalty's gradient with respect to a weight comes from differentiating a gradient (create_graph); compare it with
        // a central difference of the penalty itself, in float64 where the difference's error is ~1e-8.
        using var scope = NewDisposeScope();
        using var network = new MlpNetwork(3, new[] { 5 }, 2, MlpActivation.Gelu, 0, false);
        network.to(float64);
        var head = OutputHead.For(PredictionKind.MulticlassClassification, LabelKeyValues.Unnamed(2));
        var gen = new Generator(11);
        using var batch = new TensorBatch(randn(new long[] { 6, 3 }, dtype: float64, generator: gen), tensor(new long[] { 0, 1, 1, 0, 1, 0 }), null, 6);
        Func<TensorBatch, Tensor> forward = b => network.forward(b.Features);
        var weight = network.parameters().First();
        var penalty = InputGradientPenalty.Penalty(forward, batch, head, out _);
        var analytic = torch.autograd.grad(new[] { penalty }, new[] { weight })[0];

        const double h = 1e-5;
        using var noGrad = no_grad();
        for (int k = 0; k < 3; k++)
        {
            long i = k, j = (k * 2) % 3;
            double original = weight[i, j].item<double>();
            weight[i, j] = original + h;
            double up = Value();
            weight[i, j] = original - h;
            double down = Value();
            weight[i, j] = original;
            double numeric = (up - down) / (2 * h);
            Assert.That(analytic[i, j].item<double>(), Is.EqualTo(numeric).Within(1e-6 + 1e-5 * Math.Abs(numeric)), $"weight [{i}, {j}]");
            Assert.That(Math.Abs(numeric), Is.GreaterThan(1e-6), "the penalty depends on the weight");
        }

        double Value()
        {
            using var enable = enable_grad();
            return InputGradientPenalty.Penalty(forward, batch, head, out _).item<double>();
        }
    }

    [Test]
    public void TrainingWithAnInputGradientPenaltyTrainsAndFlattensTheLoss()
    {
        var ml = new MLContext(1);
        var data = Blobs.Keyed(ml, Blobs.Make(192, 1));
        var env = HazyEnvironment.From(ml);
        var head = OutputHead.For(PredictionKind.MulticlassClassification);
        HazyPredictionTransformer Fit(double lambda)
        {
            var o = Options(8);
            return SupervisedTrainer.Fit(env, "test", o, head, data,
                (i, n) => new MlpNetwork(i, o.HiddenLayers, n, o.Activation, o.DropoutRate, o.LayerNorm),
                objective: lambda == 0 ? null : new InputGradientPenalty(head.ForTrainingLabel(data.Schema["Label"]), lambda));
        }
        using var plain = Fit(0);
        using var penalised = Fit(1.0);

        var test = Blobs.Keyed(ml, Blobs.Make(150, 2));
        double Accuracy(HazyPredictionTransformer m) => ml.MulticlassClassification.Evaluate(m.Transform(test)).MacroAccuracy;
        Assert.That(Accuracy(plain), Is.GreaterThan(0.8));
        Assert.That(Accuracy(penalised), Is.GreaterThan(0.8), "the penalised model still learns the task");

        // The penalty is what the second model minimised alongside the loss: its input gradients are smaller on held-out rows.
        double MeanPenalty(HazyPredictionTransformer m)
        {
            var batcher = new DataViewBatcher(test, "Features", "Label", LabelKind.Key);
            using var batch = batcher.GetBatches(1000, null, CPU).Single();
            Func<TensorBatch, Tensor> forward = b => m.Network.forward(b.Features);
            using var scope = NewDisposeScope();
            return InputGradientPenalty.Penalty(forward, batch, m.Head, out _).item<float>();
        }
        double p0 = MeanPenalty(plain), p1 = MeanPenalty(penalised);
        Assert.That(p1, Is.LessThan(0.8 * p0), $"input-gradient penalty: plain {p0:G4}, penalised {p1:G4}");
    }
}
