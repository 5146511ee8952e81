using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Sequence;

/// <summary>
/// A row's scores do not depend on the rows it is batched with: scored alone, in a batch padded to a longer row (with
/// junk in the padded steps), and through ONNX Runtime in ML.NET, every backbone and normalisation gives the same scores.
/// </summary>
public sealed class PaddingInvarianceTests
{
    public static IEnumerable<TestCaseData> Configurations()
    {
        foreach (var backbone in new[] { SequenceBackbone.S4D, SequenceBackbone.Transformer })
        foreach (var bidirectional in backbone == SequenceBackbone.S4D ? new[] { false, true } : new[] { false })
        foreach (var normalization in new[] { SequenceNormalization.LayerNorm, SequenceNormalization.BatchNorm })
        foreach (var preNorm in new[] { false, true })
            yield return new TestCaseData(backbone, bidirectional, normalization, preNorm);
    }

    [TestCaseSource(nameof(Configurations))]
    public void ScoresDoNotDependOnPadding(SequenceBackbone backbone, bool bidirectional, SequenceNormalization normalization, bool preNorm)
    {
        var ml = new MLContext(1);
        var options = Waves.SmallOptions(bidirectional);
        options.Backbone = backbone;
        options.Normalization = normalization;
        options.PreNorm = preNorm;
        options.NumberOfEpochs = 1;
        options.Seed = 3;
        options.MaximumLength = 48;
        using var model = ml.MulticlassClassification.Trainers.HazySequence(options).Fit(Waves.Keyed(ml, Waves.MakeVariable(60, 1, maxLength: 30)));
        var rows = Waves.MakeVariable(12, 2, minLength: 3, maxLength: 40);
        var test = Waves.Keyed(ml, rows);

        var alone = model.ScoreWithTorch(test, batchSize: 1);
        var batched = model.ScoreWithTorch(test, batchSize: rows.Length);
        var onnx = ConformanceHelpers.ReadScores(model.Transform(test));
        var junk = ScoreWithJunkPadding(model, rows);
        for (int i = 0; i < rows.Length; i++)
        {
            string row = $"row {i} ({rows[i].Features.Length / Waves.Channels} steps)";
            ConformanceHelpers.AssertClose(batched[i], alone[i], 1e-4, row + ", zero-padded batch");
            ConformanceHelpers.AssertClose(junk[i], alone[i], 1e-4, row + ", junk in the padded steps");
            ConformanceHelpers.AssertClose(onnx[i], alone[i], 1e-4, row + ", ONNX Runtime");
        }
    }

    [Test]
    public void BatchNormStatisticsIgnorePaddedSteps()
    {
        using var scope = NewDisposeScope();
        using var norm = new SequenceBatchNorm(3);
        norm.train();
        using var generator = new Generator(4);
        var x = randn(new long[] { 2, 5, 3 }, generator: generator);
        var lengths = tensor(new long[] { 5, 2 });
        using (no_grad())
            x[1, TensorIndex.Slice(2), TensorIndex.Colon].fill_(1000);
        var mask = SequenceNetwork.Mask(lengths, 5, ScalarType.Float32)!;
        var y = norm.forward(x, mask);

        // Statistics of the 7 valid steps only, in double.
        var valid = Enumerable.Range(0, 5).Select(t => x[0, t]).Concat(Enumerable.Range(0, 2).Select(t => x[1, t]))
            .Select(v => v.to(ScalarType.Float64)).ToArray();
        var stacked = stack(valid);
        var mean = stacked.mean(new long[] { 0 });
        var variance = stacked.var(0, unbiased: false);
        var buffers = norm.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        // Running mean after one step from 0 with momentum 0.1; the valid outputs are standardised by the valid statistics.
        var expectedRunning = (mean * 0.1).to(ScalarType.Float32);
        Assert.That(buffers["running_mean"].allclose(expectedRunning, rtol: 1e-5, atol: 1e-6), Is.True, "running mean of the valid steps");
        var standardised = ((x[0].to(ScalarType.Float64) - mean) / (variance + 1e-5).sqrt()).to(ScalarType.Float32);
        Assert.That(y[0].allclose(standardised, rtol: 1e-4, atol: 1e-5), Is.True, "valid outputs standardised by the valid statistics");
    }

    /// <summary>The network on all rows at once, padded to the longest with large random values that the mask must hide.</summary>
    private static float[][] ScoreWithJunkPadding(HazyPredictionTransformer model, Waves.VariableRow[] rows)
    {
        var network = (ISequenceNetwork)model.Network;
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
