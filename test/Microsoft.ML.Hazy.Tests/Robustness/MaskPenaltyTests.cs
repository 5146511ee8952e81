using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Robustness;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Robustness;

/// <summary>The mask penalties against closed forms (spec §5.4), computed independently in float64 C#.</summary>
public sealed class MaskPenaltyTests
{
    private const int Rows = 5, Dims = 7;

    private static double[,] RandomMatrix(Random r, int a, int b)
    {
        var m = new double[a, b];
        for (int i = 0; i < a; i++)
            for (int j = 0; j < b; j++)
                m[i, j] = r.NextDouble() * 2 - 1;
        return m;
    }

    private static Tensor T(double[,] m) => tensor(m.Cast<double>().ToArray(), new long[] { m.GetLength(0), m.GetLength(1) }, dtype: float64);

    /// <summary>A linear model f = x Wᵀ + b on random data with a random 0/1 outside mask, in float64.</summary>
    private static (double[,] W, double[] B, double[,] X, double[,] Outside) Linear(int classes, int seed)
    {
        var r = new Random(seed);
        var w = RandomMatrix(r, classes, Dims);
        var b = Enumerable.Range(0, classes).Select(_ => r.NextDouble()).ToArray();
        var x = RandomMatrix(r, Rows, Dims);
        var outside = new double[Rows, Dims];
        for (int i = 0; i < Rows; i++)
            for (int j = 0; j < Dims; j++)
                outside[i, j] = r.NextDouble() < 0.5 ? 1 : 0;
        return (w, b, x, outside);
    }

    private static double[] Logits(double[,] w, double[] b, double[,] x, int row) =>
        Enumerable.Range(0, w.GetLength(0)).Select(c => b[c] + Enumerable.Range(0, Dims).Sum(j => w[c, j] * x[row, j])).ToArray();

    private static (Tensor X, Tensor Output) Forward(double[,] w, double[] b, double[,] x)
    {
        var xt = T(x).requires_grad_(true);
        using var wt = T(w);
        using var bt = tensor(b, dtype: float64);
        return (xt, xt.matmul(wt.t()).add(bt));
    }

    [TestCase(2)]
    [TestCase(3)]
    public void GradMaskOfALinearModelIsTheClosedForm(int classes)
    {
        // g = Σ_{c<k} sign(f_c − f_k)(w_c − w_k) per row (C = 2: sign(f₀ − f₁)(w₀ − w₁), §5.4); penalty Σ |g ⊙ M̄|.
        using var scope = NewDisposeScope();
        var (w, b, x, outside) = Linear(classes, 1);
        var (xt, output) = Forward(w, b, x);
        double actual = MaskPenalties.GradMask(output, xt, T(outside)).item<double>();
        double expected = 0;
        for (int i = 0; i < Rows; i++)
        {
            var f = Logits(w, b, x, i);
            for (int j = 0; j < Dims; j++)
            {
                double g = 0;
                for (int c = 0; c < classes; c++)
                    for (int k = c + 1; k < classes; k++)
                        g += Math.Sign(f[c] - f[k]) * (w[c, j] - w[k, j]);
                expected += Math.Abs(g * outside[i, j]);
            }
        }
        Assert.That(expected, Is.GreaterThan(0.1));
        Assert.That(actual, Is.EqualTo(expected).Within(1e-6));
    }

    [TestCase(2)]
    [TestCase(3)]
    public void RrrOfALinearModelIsTheClosedForm(int classes)
    {
        // g = Σ_c ∂log p_c/∂x = Σ_c w_c − C·(p·W) per row (§5.4); penalty Σ (g ⊙ M̄)².
        using var scope = NewDisposeScope();
        var (w, b, x, outside) = Linear(classes, 2);
        var (xt, output) = Forward(w, b, x);
        double actual = MaskPenalties.Rrr(output, xt, T(outside)).item<double>();
        double expected = 0;
        for (int i = 0; i < Rows; i++)
        {
            var f = Logits(w, b, x, i);
            double max = f.Max();
            var e = f.Select(v => Math.Exp(v - max)).ToArray();
            var p = e.Select(v => v / e.Sum()).ToArray();
            for (int j = 0; j < Dims; j++)
            {
                double g = Enumerable.Range(0, classes).Sum(c => w[c, j]) - classes * Enumerable.Range(0, classes).Sum(k => p[k] * w[k, j]);
                expected += Math.Pow(g * outside[i, j], 2);
            }
        }
        Assert.That(expected, Is.GreaterThan(0.01));
        Assert.That(actual, Is.EqualTo(expected).Within(1e-6));
    }

    [Test]
    public void TheSingleBinaryLogitGivesTheTwoLogitPenalties()
    {
        // A binary head's logit z is f₁ − f₀ of the two-logit form with W = [0; w]: both penalties must agree with it.
        using var scope = NewDisposeScope();
        var (w, b, x, outside) = Linear(1, 3);
        var two = new double[2, Dims];
        for (int j = 0; j < Dims; j++)
            two[1, j] = w[0, j];
        var (x1, single) = Forward(w, b, x);
        var (x2, pair) = Forward(two, new[] { 0, b[0] }, x);
        Assert.That(MaskPenalties.GradMask(single, x1, T(outside)).item<double>(), Is.EqualTo(MaskPenalties.GradMask(pair, x2, T(outside)).item<double>()).Within(1e-9));
        Assert.That(MaskPenalties.Rrr(single, x1, T(outside)).item<double>(), Is.EqualTo(MaskPenalties.Rrr(pair, x2, T(outside)).item<double>()).Within(1e-9));
    }

    private static MlpNetwork SmallMlp(int inputs = Dims, int outputs = 3, MlpActivation activation = MlpActivation.Gelu)
    {
        var network = new MlpNetwork(inputs, new[] { 6 }, outputs, activation, 0, false);
        TrainingRandom.Initialize(network, new Generator(5));
        network.to(float64);
        return network;
    }

    private static Tensor Penalty(MaskPenaltyKind kind, MlpNetwork network, Tensor x, Tensor outside, int seed = 9)
    {
        if (kind == MaskPenaltyKind.ActDiff)
        {
            var objective = new MaskPenaltyObjective(new MaskPenaltyOptions { Kind = kind }, Objectives.Supervised(OutputHead.For(PredictionKind.MulticlassClassification)),
                OutputHead.For(PredictionKind.MulticlassClassification));
            var shuffled = MaskPenalties.ShuffleOutside(x, outside, new Generator((ulong)seed));
            var (_, a) = objective.Activations(network, x, null, withOutput: false);
            var (_, c) = objective.Activations(network, shuffled, null, withOutput: false);
            return MaskPenalties.ActivationDifference(a, c, ones(x.shape[0], dtype: x.dtype));
        }
        var leaf = x.detach().requires_grad_(true);
        var output = network.forward(leaf);
        return kind == MaskPenaltyKind.Rrr ? MaskPenalties.Rrr(output, leaf, outside) : MaskPenalties.GradMask(output, leaf, outside);
    }

    [TestCase(MaskPenaltyKind.GradMask)]
    [TestCase(MaskPenaltyKind.Rrr)]
    [TestCase(MaskPenaltyKind.ActDiff)]
    public void AFullMaskGivesExactlyZeroAndAPartialOneDoesNot(MaskPenaltyKind kind)
    {
        using var scope = NewDisposeScope();
        using var network = SmallMlp();
        var x = randn(new long[] { Rows, Dims }, dtype: float64, generator: new Generator(3));
        Assert.That(Penalty(kind, network, x, zeros(Rows, Dims, dtype: float64)).item<double>(), Is.EqualTo(0.0), "mask = whole input");
        var half = zeros(Rows, Dims, dtype: float64);
        half[TensorIndex.Colon, TensorIndex.Slice(0, 4)] = ones(Rows, 4, dtype: float64);
        Assert.That(Penalty(kind, network, x, half).item<double>(), Is.GreaterThan(1e-6), "the network reads the outside values");
    }

    [TestCase(MaskPenaltyKind.GradMask)]
    [TestCase(MaskPenaltyKind.Rrr)]
    [TestCase(MaskPenaltyKind.ActDiff)]
    public void ANetworkThatIgnoresTheOutsideGetsZeroWhateverTheInsideHolds(MaskPenaltyKind kind)
    {
        // The penalty acts only through the outside: with the first layer's weights on the outside values zeroed, every
        // penalty is exactly 0, and stays 0 when the inside values change.
        using var scope = NewDisposeScope();
        using var network = SmallMlp();
        var first = network.parameters().First();
        using (no_grad())
            first[TensorIndex.Colon, TensorIndex.Slice(0, 4)] = zeros(6, 4, dtype: float64);
        var outside = zeros(Rows, Dims, dtype: float64);
        outside[TensorIndex.Colon, TensorIndex.Slice(0, 4)] = ones(Rows, 4, dtype: float64);
        var x = randn(new long[] { Rows, Dims }, dtype: float64, generator: new Generator(3));
        Assert.That(Penalty(kind, network, x, outside).item<double>(), Is.EqualTo(0.0));
        var changed = x.clone();
        changed[TensorIndex.Colon, TensorIndex.Slice(4, Dims)] = randn(new long[] { Rows, Dims - 4 }, dtype: float64, generator: new Generator(4)).mul(3.0.ToScalar());
        Assert.That(Penalty(kind, network, changed, outside).item<double>(), Is.EqualTo(0.0));
    }

    [Test]
    public void ActDiffOfALinearLayerIsInvariantToChangesInsideTheMask()
    {
        // a(x) − a(x̃) = W(x − x̃) and x − x̃ is zero inside M: changing the inside values leaves the penalty unchanged.
        using var scope = NewDisposeScope();
        var network = new MlpNetwork(Dims, Array.Empty<int>(), 4, MlpActivation.Relu, 0, false);
        TrainingRandom.Initialize(network, new Generator(2));
        network.to(float64);
        var options = new MaskPenaltyOptions { Kind = MaskPenaltyKind.ActDiff, ActivationLayers = new[] { 0 } };
        var objective = new MaskPenaltyObjective(options, Objectives.Supervised(OutputHead.For(PredictionKind.MulticlassClassification)), OutputHead.For(PredictionKind.MulticlassClassification));
        var outside = zeros(Rows, Dims, dtype: float64);
        outside[TensorIndex.Colon, TensorIndex.Slice(0, 4)] = ones(Rows, 4, dtype: float64);
        var x = randn(new long[] { Rows, Dims }, dtype: float64, generator: new Generator(3));
        var changed = x.clone();
        changed[TensorIndex.Colon, TensorIndex.Slice(4, Dims)] = randn(new long[] { Rows, Dims - 4 }, dtype: float64, generator: new Generator(4));
        double Value(Tensor input)
        {
            var shuffled = MaskPenalties.ShuffleOutside(input, outside, new Generator(9));
            var (_, a) = objective.Activations(network, input, null, false);
            var (_, b) = objective.Activations(network, shuffled, null, false);
            return MaskPenalties.ActivationDifference(a, b, ones(Rows, dtype: float64)).item<double>();
        }
        double before = Value(x);
        Assert.That(before, Is.GreaterThan(1e-3));
        Assert.That(Value(changed), Is.EqualTo(before).Within(1e-12));
    }

    [Test]
    public void ShufflingPermutesEachRowsOutsideValuesAndKeepsTheInside()
    {
        using var scope = NewDisposeScope();
        var x = arange(0, 40, 1, dtype: float32).reshape(4, 10);
        var outside = tensor(new float[]
        {
            1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            1, 0, 1, 0, 1, 0, 1, 0, 1, 0,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        }, new long[] { 4, 10 });
        var shuffled = MaskPenalties.ShuffleOutside(x, outside, new Generator(1)).data<float>().ToArray();
        var o = outside.data<float>().ToArray();
        bool moved = false;
        for (int r = 0; r < 4; r++)
        {
            var before = Enumerable.Range(0, 10).Where(j => o[r * 10 + j] > 0).Select(j => (float)(r * 10 + j)).OrderBy(v => v).ToArray();
            var after = Enumerable.Range(0, 10).Where(j => o[r * 10 + j] > 0).Select(j => shuffled[r * 10 + j]).ToArray();
            Assert.That(after.OrderBy(v => v).ToArray(), Is.EqualTo(before), $"row {r}: the outside values are permuted among themselves");
            moved |= !after.SequenceEqual(before);
            for (int j = 0; j < 10; j++)
            {
                if (o[r * 10 + j] == 0)
                    Assert.That(shuffled[r * 10 + j], Is.EqualTo(r * 10 + j), $"row {r} slot {j} is inside and stays");
            }
        }
        Assert.That(moved, "some outside value moved");
    }

    [Test]
    public void RrrPenaltyGradientThroughDoubleBackpropMatchesFiniteDifferences()
    {
        using var scope = NewDisposeScope();
        using var network = SmallMlp();
        var x = randn(new long[] { Rows, Dims }, dtype: float64, generator: new Generator(3));
        var outside = zeros(Rows, Dims, dtype: float64);
        outside[TensorIndex.Colon, TensorIndex.Slice(0, 4)] = ones(Rows, 4, dtype: float64);
        var weight = network.parameters().First();
        var analytic = autograd.grad(new[] { Penalty(MaskPenaltyKind.Rrr, network, x, outside) }, new[] { weight })[0];
        const double h = 1e-5;
        for (int k = 0; k < 3; k++)
        {
            long i = k, j = k;
            double original;
            using (no_grad())
            {
                original = weight[i, j].item<double>();
                weight[i, j] = original + h;
            }
            double up = Penalty(MaskPenaltyKind.Rrr, network, x, outside).item<double>();
            using (no_grad())
                weight[i, j] = original - h;
            double down = Penalty(MaskPenaltyKind.Rrr, network, x, outside).item<double>();
            using (no_grad())
                weight[i, j] = original;
            double numeric = (up - down) / (2 * h);
            Assert.That(analytic[i, j].item<double>(), Is.EqualTo(numeric).Within(1e-6 + 1e-5 * Math.Abs(numeric)), $"weight [{i}, {j}]");
        }
    }

    private static TensorBatch Batch(Tensor x, Tensor labels, Tensor mask, Tensor? has = null)
    {
        var columns = new Dictionary<string, Tensor> { [MaskPenaltyOptions.MaskBatchColumn] = mask };
        if (has is not null)
            columns[MaskPenaltyOptions.HasMaskBatchColumn] = has;
        return new TensorBatch(x, labels, null, (int)x.shape[0], columns);
    }

    private static (MaskPenaltyObjective Objective, MlpNetwork Network) Objective(MaskPenaltyKind kind)
    {
        var head = OutputHead.For(PredictionKind.MulticlassClassification, LabelKeyValues.Unnamed(3));
        var network = new MlpNetwork(Dims, new[] { 6 }, 3, MlpActivation.Gelu, 0, false);
        TrainingRandom.Initialize(network, new Generator(5));
        var objective = new MaskPenaltyObjective(new MaskPenaltyOptions { Kind = kind, Weight = 0.7 }, Objectives.Supervised(head), head);
        objective.Attach(network, new Generator(1));
        network.train();
        return (objective, network);
    }

    [TestCase(MaskPenaltyKind.GradMask)]
    [TestCase(MaskPenaltyKind.Rrr)]
    [TestCase(MaskPenaltyKind.ActDiff)]
    public void ThePenaltyActsOnlyInTrainingModeAndSkipsRowsWithoutAMask(MaskPenaltyKind kind)
    {
        using var scope = NewDisposeScope();
        var (objective, network) = Objective(kind);
        using var _ = network;
        var head = OutputHead.For(PredictionKind.MulticlassClassification, LabelKeyValues.Unnamed(3));
        var x = randn(new long[] { Rows, Dims }, generator: new Generator(3));
        var labels = tensor(new long[] { 0, 1, 2, 1, 0 });
        var mask = ones(Rows, Dims);
        mask[TensorIndex.Colon, TensorIndex.Slice(0, 3)] = zeros(Rows, 3);
        Func<TensorBatch, Tensor> forward = b => network.forward(b.Features);
        using var plainBatch = Batch(x, labels, mask);
        double supervised = head.Loss(network.forward(x), plainBatch).item<float>();

        double penalised = objective.Loss(forward, plainBatch).item<float>();
        Assert.That(penalised, Is.GreaterThan(supervised + 1e-4), "training mode with a partial mask adds the penalty");

        network.eval();
        Assert.That(objective.Loss(forward, plainBatch).item<float>(), Is.EqualTo(head.Loss(network.forward(x), plainBatch).item<float>()), "eval mode: the head's loss alone");
        network.train();

        // A row flagged as having no mask counts as a row whose mask covers everything.
        var has = tensor(new float[] { 1, 0, 1, 0, 1 });
        using var flagged = Batch(x, labels, mask, has);
        var full = mask.clone();
        full[1] = ones(Dims);
        full[3] = ones(Dims);
        using var covered = Batch(x, labels, full);
        if (kind == MaskPenaltyKind.ActDiff)
        {
            // ActDiff's shuffles draw from the generator: compare from the same state.
            objective.Attach(network, new Generator(4));
            double a = objective.Loss(forward, flagged).item<float>();
            objective.Attach(network, new Generator(4));
            double b = objective.Loss(forward, covered).item<float>();
            Assert.That(a, Is.EqualTo(b).Within(1e-6));
        }
        else
        {
            Assert.That(objective.Loss(forward, flagged).item<float>(), Is.EqualTo(objective.Loss(forward, covered).item<float>()).Within(1e-6));
        }
        using var none = Batch(x, labels, mask, zeros(Rows));
        Assert.That(objective.Loss(forward, none).item<float>(), Is.EqualTo(supervised), "no row with a mask: the head's loss alone");
    }

    [Test]
    public void AMaskOutsideZeroToOneIsRejectedNamingTheColumn()
    {
        using var scope = NewDisposeScope();
        var (objective, network) = Objective(MaskPenaltyKind.GradMask);
        using var _ = network;
        var x = randn(new long[] { Rows, Dims }, generator: new Generator(3));
        using var batch = Batch(x, tensor(new long[] { 0, 1, 2, 1, 0 }), full(Rows, Dims, 2f));
        var ex = Assert.Throws<InvalidOperationException>(() => objective.Loss(b => network.forward(b.Features), batch));
        Assert.That(ex!.Message, Does.Contain("'Mask'").And.Contain("[0, 1]"));
    }
}

/// <summary>ActDiff's adversarial ("disc") variant.</summary>
public sealed class ActDiffAdversarialTests
{
    private const int Rows = 8, Dims = 6;

    private static (MaskPenaltyObjective Objective, MlpNetwork Network, OutputHead Head) Setup(double lambda, double adversarial, int seed)
    {
        var head = OutputHead.For(PredictionKind.MulticlassClassification, LabelKeyValues.Unnamed(2));
        var network = new MlpNetwork(Dims, new[] { 5 }, 2, MlpActivation.Gelu, 0, false);
        TrainingRandom.Initialize(network, new Generator(5));
        var options = new MaskPenaltyOptions { Kind = MaskPenaltyKind.ActDiff, Weight = lambda, AdversarialWeight = adversarial, DiscriminatorLearningRate = 1e-2 };
        var objective = new MaskPenaltyObjective(options, Objectives.Supervised(head), head);
        objective.Attach(network, new Generator((ulong)seed));
        network.train();
        return (objective, network, head);
    }

    private static TensorBatch Batch(Tensor x, Tensor labels, Tensor mask) =>
        new(x, labels, null, (int)x.shape[0], new Dictionary<string, Tensor> { [MaskPenaltyOptions.MaskBatchColumn] = mask });

    [Test]
    public void TheAdversarialTermAddsAPositiveCrossEntropyAndItsDiscriminatorLearns()
    {
        using var scope = NewDisposeScope();
        var x = randn(new long[] { Rows, Dims }, generator: new Generator(3));
        // Outside the mask (the last 3 values) the rows carry a large offset that shuffling moves between positions.
        x[TensorIndex.Colon, TensorIndex.Slice(3, 6)] = x[TensorIndex.Colon, TensorIndex.Slice(3, 6)] * 3 + arange(3).to(float32) * 4;
        var labels = tensor(new long[] { 0, 1, 0, 1, 0, 1, 0, 1 });
        var mask = ones(Rows, Dims);
        mask[TensorIndex.Colon, TensorIndex.Slice(3, 6)] = zeros(Rows, 3);
        using var batch = Batch(x, labels, mask);
        var (plain, network, _) = Setup(0.7, 0, seed: 4);
        var (adversarial, _, _) = Setup(0.7, 2, seed: 4);
        Func<TensorBatch, Tensor> forward = b => network.forward(b.Features);
        double a = plain.Loss(forward, batch).item<float>();
        double b = adversarial.Loss(forward, batch).item<float>();
        // The swapped-label cross-entropy of two sets of rows is positive: the variant adds 2 × a positive term.
        Assert.That(b - a, Is.GreaterThan(0.1), "the adversarial term is added with its weight");
        Assert.That(adversarial.Discriminator, Is.Not.Null);
        double first = adversarial.Discriminator!.LastLoss;
        for (int step = 0; step < 60; step++)
            adversarial.Loss(forward, batch).Dispose();
        Assert.That(adversarial.Discriminator.LastLoss, Is.LessThan(first - 0.05),
            "the discriminator's own steps lower its loss on activations it can tell apart (the network is not trained here)");
    }

    [Test]
    public void TheAdversarialWeightIsCheckedAndAppliesToActDiffOnly()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new MlpTrainer.Options
            { Penalty = new MaskPenaltyOptions { Kind = MaskPenaltyKind.GradMask, AdversarialWeight = 1 } }.Check());
        Assert.Throws<ArgumentOutOfRangeException>(() => new MlpTrainer.Options
            { Penalty = new MaskPenaltyOptions { Kind = MaskPenaltyKind.ActDiff, AdversarialWeight = -1 } }.Check());
        Assert.Throws<ArgumentOutOfRangeException>(() => new MlpTrainer.Options
            { Penalty = new MaskPenaltyOptions { Kind = MaskPenaltyKind.ActDiff, AdversarialWeight = 1, DiscriminatorLearningRate = 0 } }.Check());
    }

    [Test]
    public void AFullMaskSkipsTheAdversarialTermToo()
    {
        using var scope = NewDisposeScope();
        var x = randn(new long[] { Rows, Dims }, generator: new Generator(3));
        var labels = tensor(new long[] { 0, 1, 0, 1, 0, 1, 0, 1 });
        using var batch = Batch(x, labels, ones(Rows, Dims));
        var (objective, network, head) = Setup(0.7, 2, seed: 4);
        Func<TensorBatch, Tensor> forward = b => network.forward(b.Features);
        Assert.That(objective.Loss(forward, batch).item<float>(), Is.EqualTo(head.Loss(network.forward(x), batch).item<float>()));
        Assert.That(objective.Discriminator, Is.Null, "no discriminator is created while no row has values outside its mask");
    }
}
