using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Robustness;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Robustness;

/// <summary>Group DRO (Sagawa et al. 2020), GEORGE pseudo-groups and worst-group accuracy.</summary>
public sealed class GroupDroTests
{
    private sealed class Row
    {
        public bool Label;
        [VectorType(4)] public float[] Features = Array.Empty<float>();
        public string Group = "";
    }

    /// <summary>
    /// A Waterbirds-like set: the label is in feature 0 (noisy: 10 % overlap), a spurious attribute in feature 1 (clean) that
    /// agrees with the label in all but <paramref name="minorityShare"/> of the rows; groups are (label, attribute).
    /// </summary>
    private static Row[] Spurious(int rows, double minorityShare, int seed)
    {
        var random = new Random(seed);
        double Gauss() => Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
        return Enumerable.Range(0, rows).Select(i =>
        {
            bool y = i % 2 == 0;
            bool a = random.NextDouble() < minorityShare ? !y : y;
            return new Row
            {
                Label = y,
                Features = [(float)((y ? 1 : -1) * 0.6 + 0.5 * Gauss()), (float)((a ? 1 : -1) + 0.1 * Gauss()), (float)Gauss(), (float)Gauss()],
                Group = $"{(y ? "pos" : "neg")}-{(a ? "A" : "B")}",
            };
        }).ToArray();
    }

    private static IDataView Load(MLContext ml, Row[] rows)
    {
        var data = ml.Data.LoadFromEnumerable(rows);
        // Fix the key order so that groups mean the same in training and test data.
        var keys = ml.Data.LoadFromEnumerable(new[] { "neg-A", "neg-B", "pos-A", "pos-B" }.Select(g => new GroupName { Group = g }));
        return ml.Transforms.Conversion.MapValueToKey("Group", keyData: keys).Fit(data).Transform(data);
    }

    private sealed class GroupName
    {
        public string Group = "";
    }

    private static MlpTrainer.Options Mlp(GroupDroOptions? dro) => new()
    {
        HiddenLayers = [16],
        NumberOfEpochs = 30,
        BatchSize = 50,
        LearningRate = 1e-2,
        Seed = 3,
        Penalty = dro,
    };

    [Test]
    public void TheObjectiveIsTheGroupWeightedLossAfterOneExponentiatedGradientStep()
    {
        var head = OutputHead.For(PredictionKind.MulticlassClassification, LabelKeyValues.Unnamed(3));
        const double eta = 0.7;
        using var objective = new GroupDroObjective(head, groups: 4, stepSize: eta);
        double[,] logits = { { 2, 0, -1 }, { 0.5, 0.1, 0.3 }, { -1, 2, 0 }, { 0, 0, 3 }, { 1, 1, 1 } };
        long[] labels = [0, 2, 1, 0, 1];
        long[] groups = [0, 0, 1, 3, 3]; // group 2 is absent
        // Independent float64 computation: per-row cross-entropy, per-group means, q ← q·exp(ηL)/Z, loss Σ q L.
        var rowLoss = new double[5];
        for (int i = 0; i < 5; i++)
        {
            double max = Math.Max(logits[i, 0], Math.Max(logits[i, 1], logits[i, 2]));
            double z = Enumerable.Range(0, 3).Sum(c => Math.Exp(logits[i, c] - max));
            rowLoss[i] = -(logits[i, labels[i]] - max - Math.Log(z));
        }
        var groupLoss = new double[4];
        for (int g = 0; g < 4; g++)
        {
            var members = Enumerable.Range(0, 5).Where(i => groups[i] == g).ToArray();
            groupLoss[g] = members.Length == 0 ? 0 : members.Average(i => rowLoss[i]);
        }
        var q = Enumerable.Repeat(0.25, 4).ToArray();
        double[] Step()
        {
            var u = q.Select((w, g) => w * Math.Exp(eta * groupLoss[g])).ToArray();
            return u.Select(w => w / u.Sum()).ToArray();
        }

        using var x = tensor(new double[] { 0 }).reshape(1, 1);
        using var output = tensor(logits.Cast<double>().ToArray(), float64).reshape(5, 3);
        using var labelTensor = tensor(labels);
        using var groupTensor = tensor(groups);
        using var batch = new TensorBatch(output, labelTensor, null, 5, new Dictionary<string, Tensor> { [GroupDroOptions.GroupBatchColumn] = groupTensor });
        for (int step = 0; step < 2; step++)
        {
            q = Step();
            using var loss = objective.Loss(b => b.Features.alias(), batch);
            double expected = q.Select((w, g) => w * groupLoss[g]).Sum();
            Assert.That(loss.item<double>(), Is.EqualTo(expected).Within(1e-12), $"step {step}");
            Assert.That(objective.Weights, Is.EqualTo(q).Within(1e-12), $"the group weights after step {step} (they persist between steps)");
        }
        int hardest = Array.IndexOf(groupLoss, groupLoss.Max());
        Assert.That(Array.IndexOf(objective.Weights, objective.Weights.Max()), Is.EqualTo(hardest), "the group with the highest loss gains the most weight");
    }

    [Test]
    public void GroupDroRaisesTheWorstGroupAccuracyOfASpuriouslyCorrelatedTask()
    {
        var ml = new MLContext(1);
        var train = Load(ml, Spurious(1000, minorityShare: 0.04, seed: 1));
        var test = Load(ml, Spurious(2000, minorityShare: 0.5, seed: 2));
        using var erm = ml.BinaryClassification.Trainers.HazyMlp(Mlp(null)).Fit(train);
        using var dro = ml.BinaryClassification.Trainers.HazyMlp(Mlp(new GroupDroOptions { StepSize = 0.1 })).Fit(train);
        var ermMetrics = ml.Hazy().EvaluateGroups(erm.Transform(test));
        var droMetrics = ml.Hazy().EvaluateGroups(dro.Transform(test));
        TestContext.Out.WriteLine($"worst group: ERM {ermMetrics.WorstGroupAccuracy:F3} ({ermMetrics.WorstGroup}), DRO {droMetrics.WorstGroupAccuracy:F3} ({droMetrics.WorstGroup})");
        // ERM follows the clean spurious feature, so the minority groups (label and attribute disagree) fall far below;
        // the label's own feature separates 88 % of rows, which group DRO approaches in every group.
        Assert.That(ermMetrics.WorstGroupAccuracy, Is.LessThan(0.6));
        Assert.That(droMetrics.WorstGroupAccuracy, Is.GreaterThan(ermMetrics.WorstGroupAccuracy + 0.15));
        Assert.That(droMetrics.Groups, Has.Count.EqualTo(4));
    }

    [Test]
    public void AGroupDroModelScoresSavesAndLoadsWithoutTheGroupColumn()
    {
        var ml = new MLContext(1);
        var train = Load(ml, Spurious(200, 0.1, seed: 1));
        using var model = ml.BinaryClassification.Trainers.HazyMlp(Mlp(new GroupDroOptions())).Fit(train);
        var test = ml.Data.LoadFromEnumerable(Spurious(50, 0.5, seed: 3).Select(r => new { r.Features }).ToArray()
            .Select(r => new FeaturesOnly { Features = r.Features }));
        var scores = model.Transform(test).GetColumn<float>("Score").ToArray();
        var path = Path.Combine(TestContext.CurrentContext.WorkDirectory, $"dro-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, train.Schema, path);
            var loaded = ml.Model.Load(path, out _);
            Assert.That(loaded.Transform(test).GetColumn<float>("Score").ToArray(), Is.EqualTo(scores).Within(1e-5));
            (loaded as IDisposable)?.Dispose();
        }
        finally
        {
            File.Delete(path);
        }
    }

    private sealed class FeaturesOnly
    {
        [VectorType(4)] public float[] Features = Array.Empty<float>();
    }

    [Test]
    public void AGroupColumnThatIsNotAKeyIsRejectedByName()
    {
        var ml = new MLContext(1);
        var data = ml.Data.LoadFromEnumerable(Spurious(40, 0.1, 1));
        var error = Assert.Throws<ArgumentOutOfRangeException>(() =>
            ml.BinaryClassification.Trainers.HazyMlp(Mlp(new GroupDroOptions())).Fit(data));
        Assert.That(error!.Message, Does.Contain("'Group'").And.Contain("String").And.Contain("MapValueToKey"));
        var missing = Assert.Throws<ArgumentOutOfRangeException>(() =>
            ml.BinaryClassification.Trainers.HazyMlp(Mlp(new GroupDroOptions { GroupColumnName = "Nope" })).Fit(data));
        Assert.That(missing!.Message, Does.Contain("'Nope'").And.Contain("not found"));
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.BinaryClassification.Trainers.HazyMlp(Mlp(new GroupDroOptions { StepSize = -1 })));
    }

    private sealed class Scored
    {
        public string Group = "";
        public bool Label;
        public bool PredictedLabel;
    }

    [Test]
    public void GroupMetricsCountEachGroupsCorrectRows()
    {
        var ml = new MLContext(1);
        // a: 3 of 4 right; b: 1 of 2; c: 2 of 2.
        var rows = new[]
        {
            ("a", true, true), ("a", false, false), ("a", true, false), ("a", false, false),
            ("b", true, true), ("b", true, false), ("c", false, false), ("c", true, true),
        }.Select(r => new Scored { Group = r.Item1, Label = r.Item2, PredictedLabel = r.Item3 });
        var data = ml.Data.LoadFromEnumerable(rows);
        var keyed = ml.Transforms.Conversion.MapValueToKey("Group").Fit(data).Transform(data);
        var metrics = ml.Hazy().EvaluateGroups(keyed);
        Assert.That(metrics.Groups.Select(g => (g.Name, g.Count, g.Accuracy)), Is.EqualTo(new[] { ("a", 4L, 0.75), ("b", 2L, 0.5), ("c", 2L, 1.0) }));
        Assert.That(metrics.WorstGroup, Is.EqualTo("b"));
        Assert.That(metrics.WorstGroupAccuracy, Is.EqualTo(0.5));
        Assert.That(metrics.Accuracy, Is.EqualTo(6.0 / 8));
        Assert.That(metrics.MeanGroupAccuracy, Is.EqualTo((0.75 + 0.5 + 1.0) / 3).Within(1e-15));
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().EvaluateGroups(data));
        Assert.That(error!.Message, Does.Contain("'Group'").And.Contain("expected a key"));
    }

    private sealed class Embedded
    {
        public string Label = "";
        [VectorType(3)] public float[] Embedding = Array.Empty<float>();
        public int Blob;
    }

    [Test]
    public void ProposeGroupsRecoversPlantedSubclustersPerClass()
    {
        var ml = new MLContext(1);
        var random = new Random(4);
        // Class "x" has 2 well separated blobs, class "y" has 3; the blobs of different classes overlap on purpose
        // (clustering all rows together would mix classes).
        var centres = new[] { new[] { 0f, 0, 0 }, new[] { 10f, 0, 0 }, new[] { 0f, 0, 0 }, new[] { 0f, 10, 0 }, new[] { 0f, 0, 10 } };
        var rows = Enumerable.Range(0, 250).Select(i =>
        {
            int blob = i % 5;
            return new Embedded
            {
                Label = blob < 2 ? "x" : "y",
                Blob = blob,
                Embedding = centres[blob].Select(c => c + (float)(random.NextDouble() - 0.5)).ToArray(),
            };
        }).ToArray();
        var data = ml.Data.LoadFromEnumerable(rows);
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(data).Transform(data);
        var groups = ml.Hazy().Slicing.ProposeGroups(keyed, "Embedding", seed: 1);
        Assert.That(groups.ClustersPerClass, Is.EqualTo(new[] { 2, 3 }), "the silhouette score picks the planted number of blobs");
        Assert.That(groups.GroupNames, Is.EqualTo(new[] { "x/0", "x/1", "y/0", "y/1", "y/2" }));
        // Every group holds exactly one planted blob, and every blob one group.
        var pairs = rows.Select((r, i) => (r.Blob, Group: groups.Groups[i])).Distinct().ToArray();
        Assert.That(pairs, Has.Length.EqualTo(5));
        Assert.That(pairs.Select(p => p.Group).Distinct().Count(), Is.EqualTo(5));
        // The appended column reads back the same groups, as a key named by the groups.
        var column = groups.Data.GetColumn<uint>("Group").ToArray();
        Assert.That(column.Select(k => (int)k - 1), Is.EqualTo(groups.Groups));
        var fixedTwo = ml.Hazy().Slicing.ProposeGroups(keyed, "Embedding", clustersPerClass: 2, seed: 1);
        Assert.That(fixedTwo.ClustersPerClass, Is.EqualTo(new[] { 2, 2 }));

        var error = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().Slicing.ProposeGroups(data, "Embedding"));
        Assert.That(error!.Message, Does.Contain("'Label'").And.Contain("expected a key"));
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().Slicing.ProposeGroups(keyed, "Blob"));
    }

    [Test]
    public void PseudoGroupsFeedGroupDroTraining()
    {
        // GEORGE end to end: cluster each class's features, train group DRO on the pseudo-groups.
        var ml = new MLContext(1);
        var raw = Load(ml, Spurious(400, 0.1, seed: 5));
        var withKeyLabel = ml.Transforms.Conversion.MapValueToKey("LabelKey", "Label").Fit(raw).Transform(raw);
        var groups = ml.Hazy().Slicing.ProposeGroups(withKeyLabel, "Features", "LabelKey", outputColumnName: "PseudoGroup", clustersPerClass: 2, seed: 2);
        using var model = ml.BinaryClassification.Trainers.HazyMlp(Mlp(new GroupDroOptions { GroupColumnName = "PseudoGroup", StepSize = 0.1 }))
            .Fit(groups.Data);
        Assert.That(model.Transform(raw).GetColumn<float>("Score").All(float.IsFinite));
    }
}
