using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Sequence;

/// <summary>
/// Per-series z-normalisation over the valid steps, the pooling choices and the training augmentations of the sequence
/// trainer: golden values, padding invariance through TorchSharp and ONNX, determinism per seed, and no effect at evaluation.
/// </summary>
public sealed class TimeSeriesPracticeTests
{
    [Test]
    public void ZNormalisationOfAPaddedRowEqualsThatOfTheUnpaddedRow()
    {
        using var scope = NewDisposeScope();
        // Row 0: 5 valid steps of 2 channels, then 3 padded steps of junk; row 1: all 8 steps valid.
        var rand = new Random(5);
        var values = new float[2 * 8 * 2];
        for (int i = 0; i < values.Length; i++)
            values[i] = (float)(rand.NextDouble() * 10 - 3);
        for (int t = 5; t < 8; t++)
            values[t * 2] = values[t * 2 + 1] = 1e4f;
        var x = tensor(values, new long[] { 2, 8, 2 });
        var lengths = tensor(new long[] { 5, 8 });
        var mask = SequenceNetwork.Mask(lengths, 8, ScalarType.Float32);
        var padded = SeriesNormalization.Apply(x, mask).data<float>().ToArray();
        var alone = SeriesNormalization.Apply(x[TensorIndex.Slice(0, 1), TensorIndex.Slice(0, 5)], null).data<float>().ToArray();

        // Independent float64 z-normalisation of the 5 valid steps of row 0 (population variance, 1e-8 under the root).
        for (int c = 0; c < 2; c++)
        {
            var series = Enumerable.Range(0, 5).Select(t => (double)values[t * 2 + c]).ToArray();
            double mean = series.Average();
            double sd = Math.Sqrt(series.Select(v => (v - mean) * (v - mean)).Average() + 1e-8);
            for (int t = 0; t < 5; t++)
            {
                double expected = (series[t] - mean) / sd;
                // float32 arithmetic on values of order 10: a few ulps of the standardised value.
                Assert.That(padded[t * 2 + c], Is.EqualTo(expected).Within(1e-5), $"padded row, step {t}, channel {c}");
                Assert.That(alone[t * 2 + c], Is.EqualTo(expected).Within(1e-5), $"row alone, step {t}, channel {c}");
            }
            for (int t = 5; t < 8; t++)
                Assert.That(padded[t * 2 + c], Is.EqualTo(0f), $"padded step {t}, channel {c} stays 0");
        }
        // Row 1 (no padding) gets mean 0 and variance 1 per channel.
        for (int c = 0; c < 2; c++)
        {
            var z = Enumerable.Range(0, 8).Select(t => (double)padded[16 + t * 2 + c]).ToArray();
            Assert.That(z.Average(), Is.EqualTo(0).Within(1e-6));
            Assert.That(z.Select(v => v * v).Average(), Is.EqualTo(1).Within(1e-5));
        }
    }

    public static IEnumerable<TestCaseData> Poolings()
    {
        foreach (var pooling in new[] { SequencePooling.Mean, SequencePooling.LastStep, SequencePooling.Attention })
        foreach (var bidirectional in new[] { false, true })
            yield return new TestCaseData(pooling, bidirectional);
    }

    [TestCaseSource(nameof(Poolings))]
    public void EveryPoolingWithZNormalisationIsPaddingInvariantInTorchAndOnnx(SequencePooling pooling, bool bidirectional)
    {
        var ml = new MLContext(1);
        var options = Waves.SmallOptions(bidirectional);
        options.Pooling = pooling;
        options.NormalizeSeries = true;
        options.NumberOfEpochs = 1;
        options.Seed = 3;
        options.MaximumLength = 48;
        using var model = ml.MulticlassClassification.Trainers.HazyS4D(options).Fit(Waves.Keyed(ml, Waves.MakeVariable(60, 1, maxLength: 30)));
        var rows = Waves.MakeVariable(12, 2, minLength: 3, maxLength: 40);
        var test = Waves.Keyed(ml, rows);

        var alone = model.ScoreWithTorch(test, batchSize: 1);
        var batched = model.ScoreWithTorch(test, batchSize: rows.Length);
        var onnx = ConformanceHelpers.ReadScores(model.Transform(test));
        var junk = ScoreWithJunkPadding(model, rows);
        for (int i = 0; i < rows.Length; i++)
        {
            string row = $"{pooling}, row {i} ({rows[i].Features.Length / Waves.Channels} steps)";
            ConformanceHelpers.AssertClose(batched[i], alone[i], 1e-4, row + ", zero-padded batch");
            ConformanceHelpers.AssertClose(junk[i], alone[i], 1e-4, row + ", junk in the padded steps");
            ConformanceHelpers.AssertClose(onnx[i], alone[i], 1e-4, row + ", ONNX Runtime");
        }
    }

    [Test]
    public void ZNormalisationMakesScoresInvariantToEachSeriesLevelAndScale()
    {
        var ml = new MLContext(1);
        var options = Waves.SmallOptions(bidirectional: true);
        options.NormalizeSeries = true;
        options.NumberOfEpochs = 1;
        options.Seed = 4;
        using var model = ml.MulticlassClassification.Trainers.HazyS4D(options).Fit(Waves.Keyed(ml, Waves.Make(30, 1)));
        var rows = Waves.Make(6, 2);
        var shifted = rows.Select(r => new Waves.Row { Class = r.Class, Features = r.Features.Select((v, i) => i % 2 == 0 ? 7.5f * v - 40 : 0.25f * v + 3).ToArray() }).ToArray();
        var a = ConformanceHelpers.ReadScores(model.Transform(Waves.Keyed(ml, rows)));
        var b = ConformanceHelpers.ReadScores(model.Transform(Waves.Keyed(ml, shifted)));
        for (int i = 0; i < rows.Length; i++)
            ConformanceHelpers.AssertClose(b[i], a[i], 1e-3, $"row {i}, each channel rescaled and shifted (ONNX)");
    }

    [Test]
    public void AugmentationsAreDeterministicPerSeedAndOffInEvaluation()
    {
        using var scope = NewDisposeScope();
        var x = randn(new long[] { 4, 20, 2 }, generator: new Generator(1));
        var lengths = tensor(new long[] { 20, 12, 7, 1 });
        var augmentation = new SequenceAugmentation(CropFraction: 0.5, Jitter: 0.1, Scaling: 0.2);

        (float[] Values, long[] Lengths) Run(ulong seed)
        {
            using var augmenter = new SequenceAugmenter(augmentation) { Generator = new Generator(seed) };
            augmenter.train();
            var (y, n) = augmenter.Augment(x, lengths);
            return (y.data<float>().ToArray(), n!.data<long>().ToArray());
        }

        var first = Run(7);
        var again = Run(7);
        var other = Run(8);
        Assert.That(again.Values, Is.EqualTo(first.Values), "same seed, same augmented batch");
        Assert.That(other.Values, Is.Not.EqualTo(first.Values), "another seed draws other augmentations");
        Assert.That(first.Lengths, Is.EqualTo(new long[] { 10, 6, 4, 1 }), "a crop keeps round(0.5·n) steps, at least 1 (banker's rounding of 3.5 is 4)");

        using var eval = new SequenceAugmenter(augmentation) { Generator = new Generator(7) };
        eval.eval();
        var (same, sameLengths) = eval.Augment(x, lengths);
        Assert.That(same.data<float>().ToArray(), Is.EqualTo(x.data<float>().ToArray()), "evaluation leaves the batch unchanged");
        Assert.That(sameLengths!.data<long>().ToArray(), Is.EqualTo(lengths.data<long>().ToArray()));
    }

    [Test]
    public void ACropIsAContiguousWindowOfTheValidSteps()
    {
        using var scope = NewDisposeScope();
        var values = Enumerable.Range(0, 3 * 10).Select(i => (float)(i + 1)).ToArray();
        var x = tensor(values, new long[] { 3, 10, 1 });
        var lengths = tensor(new long[] { 10, 6, 3 });
        using var augmenter = new SequenceAugmenter(new SequenceAugmentation(0.7, 0, 0)) { Generator = new Generator(11) };
        augmenter.train();
        var (y, n) = augmenter.Augment(x, lengths);
        var cropped = y.data<float>().ToArray();
        var kept = n!.data<long>().ToArray();
        long[] valid = { 10, 6, 3 };
        for (int b = 0; b < 3; b++)
        {
            Assert.That(kept[b], Is.EqualTo((long)Math.Max(1, Math.Round(0.7 * valid[b]))), $"row {b} length");
            float first = cropped[b * 10];
            int start = (int)first - 1 - b * 10;
            Assert.That(start, Is.InRange(0, (int)(valid[b] - kept[b])), $"row {b} window start");
            for (int t = 0; t < 10; t++)
                Assert.That(cropped[b * 10 + t], Is.EqualTo(t < kept[b] ? values[b * 10 + start + t] : 0f), $"row {b}, step {t}");
        }
    }

    [Test]
    public void TrainingWithAugmentationsIsReproducibleForASeed()
    {
        var ml = new MLContext(1);
        float[][] Train()
        {
            var options = Waves.SmallOptions();
            options.NumberOfEpochs = 2;
            options.Seed = 12;
            options.RandomCropFraction = 0.8;
            options.JitterStandardDeviation = 0.05;
            options.ScalingStandardDeviation = 0.1;
            var data = Waves.Keyed(ml, Waves.MakeVariable(40, 1));
            using var model = ml.MulticlassClassification.Trainers.HazyS4D(options).Fit(data);
            return ConformanceHelpers.ReadScores(model.Transform(Waves.Keyed(ml, Waves.MakeVariable(5, 3))));
        }

        var a = Train();
        var b = Train();
        for (int i = 0; i < a.Length; i++)
            Assert.That(b[i], Is.EqualTo(a[i]), $"row {i}: same seed, same augmentations, same model");
    }

    [TestCase(nameof(SequenceTrainer.Options.RandomCropFraction), 0.0)]
    [TestCase(nameof(SequenceTrainer.Options.RandomCropFraction), 1.5)]
    [TestCase(nameof(SequenceTrainer.Options.JitterStandardDeviation), -0.1)]
    [TestCase(nameof(SequenceTrainer.Options.ScalingStandardDeviation), double.NaN)]
    [TestCase(nameof(SequenceTrainer.Options.TimeMaskFraction), 1.0)]
    [TestCase(nameof(SequenceTrainer.Options.TimeMaskFraction), -0.1)]
    public void BadAugmentationOptionsAreRefusedNamingTheOption(string name, double value)
    {
        var options = Waves.SmallOptions();
        typeof(SequenceTrainer.Options).GetProperty(name)!.SetValue(options, value);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new MLContext(1).MulticlassClassification.Trainers.HazyS4D(options));
        Assert.That(e!.Message, Does.Contain(name));
    }

    [Test]
    public void UcrPresetNormalisesUnivariateSeriesOnly()
    {
        Assert.That(SequenceTrainer.Options.Presets.UcrClassification(channels: 1).NormalizeSeries, Is.True);
        Assert.That(SequenceTrainer.Options.Presets.UcrClassification(channels: 6).NormalizeSeries, Is.False);
        Assert.That(new SequenceTrainer.Options().NormalizeSeries, Is.EqualTo(SequenceTrainer.Options.Defaults.NormalizeSeries));
        Assert.That(new SequenceTrainer.Options().Pooling, Is.EqualTo(SequencePooling.Mean));
    }

    private static float[][] ScoreWithJunkPadding(HazyPredictionTransformer model, Waves.VariableRow[] rows)
    {
        var network = (Microsoft.ML.Hazy.Onnx.ISequenceNetwork)model.Network;
        int channels = Waves.Channels;
        int longest = rows.Max(r => r.Features.Length / channels);
        var rand = new Random(9);
        var values = new float[rows.Length * longest * channels];
        for (int i = 0; i < rows.Length; i++)
        {
            var f = rows[i].Features;
            for (int j = 0; j < longest * channels; j++)
                values[i * longest * channels + j] = j < f.Length ? f[j] : (float)(rand.NextDouble() * 200 - 100);
        }
        using var scope = NewDisposeScope();
        model.Network.eval();
        using var _ = no_grad();
        var x = tensor(values, new long[] { rows.Length, longest, channels });
        var lengths = tensor(rows.Select(r => (long)(r.Features.Length / channels)).ToArray());
        var scores = nn.functional.softmax(network.forward(x, lengths), 1).data<float>().ToArray();
        int outputs = scores.Length / rows.Length;
        return Enumerable.Range(0, rows.Length).Select(i => scores.AsSpan(i * outputs, outputs).ToArray()).ToArray();
    }
}
