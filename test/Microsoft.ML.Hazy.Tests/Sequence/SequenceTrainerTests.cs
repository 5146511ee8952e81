using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Sequence.S4D;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Training;
using Microsoft.ML.OnnxRuntime;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;
using DenseTensorF = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;
using DenseTensorL = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<long>;

namespace Microsoft.ML.Hazy.Tests.Sequence;

/// <summary>The sequence trainer beyond the conformance suite: variable length, optimizer groups, streaming, bad input, a long-range task.</summary>
public sealed class SequenceTrainerTests
{
    [Test]
    public void VariableLengthRowsTrainScoreSaveAndExport()
    {
        var ml = new MLContext(1);
        var train = Waves.Keyed(ml, Waves.MakeVariable(150, 1));
        var options = Waves.SmallOptions(bidirectional: true);
        options.Normalization = SequenceNormalization.BatchNorm;
        var trainer = ml.MulticlassClassification.Trainers.HazyS4D(options);
        var predicted = trainer.GetOutputSchema(ConformanceHelpers.ShapeOf(train.Schema));
        using var model = trainer.Fit(train);
        Assert.That(model.RowShape, Is.EqualTo(new long[] { -1, Waves.Channels }));
        Assert.That(model.GetOutputSchema(train.Schema).Where(c => !c.IsHidden).Select(c => c.Name), Is.EquivalentTo(predicted.Select(c => c.Name)));

        var test = Waves.Keyed(ml, Waves.MakeVariable(40, 2));
        var onnx = ConformanceHelpers.ReadScores(model.Transform(test));
        var torchScores = model.ScoreWithTorch(test, batchSize: 16);
        for (int i = 0; i < onnx.Length; i++)
            ConformanceHelpers.AssertClose(onnx[i], torchScores[i], 1e-4, $"row {i}");

        var path = Path.Combine(Path.GetTempPath(), $"hazy-s4d-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, train.Schema, path);
            var loaded = new MLContext(5).Model.Load(path, out _);
            Assert.That(ConformanceHelpers.ReadScores(loaded.Transform(test)), Is.EqualTo(onnx));
        }
        finally
        {
            File.Delete(path);
        }

        Waves.AssertBatchedExportMatches(model, test, torchScores);
    }

    [Test]
    public void VariableLengthRowLongerThanTheModelAcceptsThrowsNamingTheLimit()
    {
        var ml = new MLContext(1);
        using var model = ml.MulticlassClassification.Trainers.HazyS4D(Waves.SmallOptions()).Fit(Waves.Keyed(ml, Waves.MakeVariable(60, 1, maxLength: 12)));
        // The longest training row has 12 steps × 2 channels = 24 values, padded to the 64-value contract: 32 steps.
        var tooLong = Waves.Keyed(ml, Waves.MakeVariable(3, 3, minLength: 33, maxLength: 33));
        var ex = Assert.Catch<Exception>(() => ConformanceHelpers.ReadScores(model.Transform(tooLong)));
        Assert.That(Flatten(ex!), Does.Contain("66 values").And.Contain("at most 64"));
        var fits = Waves.Keyed(ml, Waves.MakeVariable(3, 3, minLength: 32, maxLength: 32));
        Assert.That(ConformanceHelpers.ReadScores(model.Transform(fits)), Has.Length.EqualTo(3));
    }

    [Test]
    public void WrongChannelCountThrowsNamingColumnAndChannels()
    {
        var ml = new MLContext(1);
        var options = Waves.SmallOptions();
        options.Channels = 3;
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.HazyS4D(options).Fit(Waves.Keyed(ml, Waves.Make(30, 1))));
        Assert.That(ex!.Message, Does.Contain("'Features'").And.Contain("32 values").And.Contain("3 channels"));

        var variable = Waves.MakeVariable(30, 1);
        variable[7].Features = variable[7].Features.Take(7).ToArray();
        var ex2 = Assert.Throws<InvalidOperationException>(() =>
            ml.MulticlassClassification.Trainers.HazyS4D(Waves.SmallOptions()).Fit(Waves.Keyed(ml, variable)));
        Assert.That(ex2!.Message, Does.Contain("'Features'").And.Contain("row 7 ").And.Contain("7 values").And.Contain("2 channels"));
    }

    [Test]
    public void InvalidOptionsAreRefusedByName()
    {
        var ml = new MLContext(1);
        var options = Waves.SmallOptions();
        options.S4D.StateSize = 7;
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().Regression.S4D(options))!.Message, Does.Contain("StateSize"));
        options = Waves.SmallOptions();
        options.Channels = 0;
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().Regression.S4D(options))!.Message, Does.Contain("Channels"));
    }

    [Test]
    public void StateSpaceParametersGetTheirOwnLearningRateAndNoWeightDecay()
    {
        var options = Waves.SmallOptions();
        options.LearningRate = 0.01;
        options.WeightDecay = 0.05;
        options.S4D.SsmLearningRate = 2e-3;
        options.S4D.TrainB = true;
        options.ParameterGroups.Add(new ParameterGroupOptions { NamePrefix = "decoder.", LearningRate = 0.5 });
        var backbone = SequenceBackbones.Create(options);
        using var network = new SequenceNetwork(2, 3, 2, new SequenceNetworkShape(8, 0.1, false), SequenceNormalization.LayerNorm, false, backbone);
        using var optimizer = TrainingLoop.CreateOptimizer(network, options.WithLayerGroups(backbone.LayerParameterGroups));
        int ssm = 0;
        foreach (var (name, parameter) in network.named_parameters())
        {
            var group = optimizer.Groups.Single(g => g.Parameters.Any(p => p.Handle == parameter.Handle));
            var (lr, decay) = name.Contains(".ssm.") ? (2e-3, 0.0) : name.StartsWith("decoder.") ? (0.5, 0.05) : (0.01, 0.05);
            Assert.That((group.LearningRate, group.WeightDecay), Is.EqualTo((lr, decay)), name);
            ssm += name.Contains(".ssm.") ? 1 : 0;
        }
        Assert.That(ssm, Is.EqualTo(2 * 4), "log_dt, log_A_real, A_imag and B of both layers");
        Assert.That(options.ParameterGroups, Has.Count.EqualTo(1), "the caller's options are not changed");
    }

    [TestCase(SequenceNormalization.LayerNorm, false)]
    [TestCase(SequenceNormalization.BatchNorm, true)]
    public void StreamingEqualsFullSequenceForTrainedModel(SequenceNormalization norm, bool preNorm)
    {
        var ml = new MLContext(1);
        var options = Waves.SmallOptions();
        options.Normalization = norm;
        options.PreNorm = preNorm;
        using var model = ml.MulticlassClassification.Trainers.HazyS4D(options).Fit(Waves.Keyed(ml, Waves.Make(120, 1)));
        var network = (SequenceNetwork)model.Network;
        var series = Waves.Series(new Random(9), 1, 300, 1.3f);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = tensor(series, new long[] { 1, 300, Waves.Channels });
        var hidden = network.Hidden(x, null);
        using (var state = network.CreateStreamState(1))
        {
            for (int t = 0; t < 300; t++)
                S4DLayerTests.AssertClose(state.Step(x[TensorIndex.Colon, t]).Hidden, hidden[TensorIndex.Colon, t], 1e-5, $"hidden state at step {t}");
        }

        using var predictor = new SequenceStreamingPredictor(model);
        var afterFifty = predictor.Append(series.AsSpan(0, 50 * Waves.Channels));
        S4DLayerTests.AssertClose(tensor(afterFifty), nn.functional.softmax(network.forward(x.narrow(1, 0, 50)), 1)[0], 1e-5, "score after 50 steps");
        float[] last = afterFifty;
        for (int t = 50; t < 300; t++)
            last = predictor.Step(series.AsSpan(t * Waves.Channels, Waves.Channels));
        Assert.That(predictor.StepsSeen, Is.EqualTo(300));
        S4DLayerTests.AssertClose(tensor(last), nn.functional.softmax(network.forward(x), 1)[0], 1e-5, "score after 300 steps");
        predictor.Reset();
        Assert.That(predictor.Append(series.AsSpan(0, 50 * Waves.Channels)), Is.EqualTo(afterFifty).Within(1e-6));
        Assert.Throws<ArgumentOutOfRangeException>(() => predictor.Step(new float[3]));
    }

    [Test]
    public void BidirectionalModelRefusesToStream()
    {
        var ml = new MLContext(1);
        using var model = ml.MulticlassClassification.Trainers.HazyS4D(Waves.SmallOptions(bidirectional: true)).Fit(Waves.Keyed(ml, Waves.Make(60, 1)));
        var ex = Assert.Throws<NotSupportedException>(() => new SequenceStreamingPredictor(model));
        Assert.That(ex!.Message, Does.Contain("bidirectional"));
    }

    [Test]
    public void SolvesTheAddingProblemAtLengthOneThousand()
    {
        // Two marked values among 1,000 uniform ones; the target is their sum. Predicting the mean gives MSE 1/6.
        const int length = 1000;
        var ml = new MLContext(1);
        var options = new SequenceTrainer.Options
        {
            Channels = 2,
            ModelDimension = 16,
            NumberOfLayers = 1,
            DropoutRate = 0,
            NumberOfEpochs = 8,
            BatchSize = 32,
            LearningRate = 3e-2,
            WeightDecay = 0,
            // LayerNorm rescales each step and washes out the one-step magnitudes the sum is made of; BatchNorm keeps them.
            Normalization = SequenceNormalization.BatchNorm,
            S4D = new S4DOptions { StateSize = 8 },
        };
        using var model = ml.Regression.Trainers.HazySequence(options).Fit(Adding(ml, 1000, length, 1));
        var metrics = ml.Regression.Evaluate(model.Transform(Adding(ml, 300, length, 2)));
        TestContext.Out.WriteLine($"Adding problem, L = {length}: test MSE {metrics.MeanSquaredError:G4} (mean predictor 0.167).");
        Assert.That(metrics.MeanSquaredError, Is.LessThan(0.01));
    }

    private static IDataView Adding(MLContext ml, int rows, int length, int seed)
    {
        var rand = new Random(seed);
        var data = Enumerable.Range(0, rows).Select(_ =>
        {
            var x = new float[length * 2];
            for (int t = 0; t < length; t++)
                x[2 * t] = (float)rand.NextDouble();
            int first = rand.Next(length / 2), second = length / 2 + rand.Next(length / 2);
            x[2 * first + 1] = x[2 * second + 1] = 1;
            return new AddingRow { Features = x, Label = x[2 * first] + x[2 * second] };
        }).ToList();
        var schema = SchemaDefinition.Create(typeof(AddingRow));
        schema["Features"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, length * 2);
        return ml.Data.LoadFromEnumerable(data, schema);
    }

    private static string Flatten(Exception ex) => ex.InnerException is null ? ex.Message : ex.Message + " | " + Flatten(ex.InnerException);

    private sealed class AddingRow
    {
        public float Label;
        public float[] Features = Array.Empty<float>();
    }
}
