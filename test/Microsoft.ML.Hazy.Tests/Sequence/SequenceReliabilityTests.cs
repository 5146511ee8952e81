using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Sequence.S4D;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Sequence;

/// <summary>Sequence training and scoring at the edges: batches too large for memory, cancellation inside a step, empty rows.</summary>
public sealed class SequenceReliabilityTests
{
    private const int LongLength = 65536;

    [Test]
    public void LongSeriesWithLargeBatchIsRefusedBeforeAnyStepNamingBatchSizeAndLength()
    {
        var ml = new MLContext(1);
        var data = LongSeries(ml, rows: 64);
        // 32 S4D blocks of width 512 on 64 rows of 65,536 steps need terabytes; the token is cancelled so that, were the
        // configuration not refused up front, the loop would stop at its first step instead of allocating them.
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        var options = new SequenceTrainer.Options
        {
            Channels = 1,
            ModelDimension = 512,
            NumberOfLayers = 32,
            BatchSize = 64,
            NumberOfEpochs = 1,
            S4D = new S4DOptions { StateSize = 2 },
            CancellationToken = cancelled.Token,
        };
        var ex = Assert.Throws<InvalidOperationException>(() => ml.BinaryClassification.Trainers.HazySequence(options).Fit(data));
        Assert.That(ex!.Message, Does.Contain("BatchSize = 64").And.Contain($"{LongLength} time steps").And.Contain("'Features'").And.Contain("GiB"));
    }

    [Test]
    public void NormalConfigurationOnTheSameLongSeriesPassesTheMemoryCheck()
    {
        var ml = new MLContext(1);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        var options = new SequenceTrainer.Options
        {
            Channels = 1,
            ModelDimension = 8,
            NumberOfLayers = 2,
            BatchSize = 4,
            NumberOfEpochs = 1,
            S4D = new S4DOptions { StateSize = 8 },
            CancellationToken = cancelled.Token,
        };
        // Past the memory check, the training loop observes the cancelled token before its first step.
        Assert.Throws<OperationCanceledException>(() => ml.BinaryClassification.Trainers.HazySequence(options).Fit(LongSeries(ml, rows: 64)));

        // The reference S4D model (4 × 128, batch 64, L = 1,000) is estimated at a few GiB, not refused on an ordinary machine.
        double bytes = SequenceNetwork.TrainingBytes(new S4DBackbone(new S4DOptions()), new SequenceNetworkShape(128, 0.1, false), 4, 1, 64, 1000);
        Assert.That(bytes / (1L << 30), Is.InRange(1.0, 8.0));
    }

    [Test]
    public void CancellationInsideTheFirstLayerStopsTheStepBeforeTheOtherBlocks()
    {
        var ml = new MLContext(1);
        using var cts = new CancellationTokenSource();
        var backbone = new CancellingBackbone(cts);
        var options = Waves.SmallOptions();
        options.CancellationToken = cts.Token;
        const int blocks = 4;
        var shape = new SequenceNetworkShape(options.ModelDimension, 0, false);
        Assert.Throws<OperationCanceledException>(() => SupervisedTrainer.Fit(HazyEnvironment.From(ml), "Test.Cancelling", options,
            PredictionKind.MulticlassClassification, Waves.Keyed(ml, Waves.Make(64, 1)),
            (channels, outputs) => new SequenceNetwork(channels, outputs, blocks, shape, SequenceNormalization.LayerNorm, false, backbone),
            sequence: new SequenceInput(Waves.Channels, 0)));
        // The first block's layer cancelled the token; the next block checked it, so the step ran one layer of four.
        Assert.That(backbone.Calls, Is.EqualTo(1));
    }

    [Test]
    public void EmptyTrainingRowThrowsNamingColumnAndRow()
    {
        var ml = new MLContext(1);
        var rows = Waves.MakeVariable(40, 1);
        rows[7].Features = Array.Empty<float>();
        var ex = Assert.Throws<InvalidOperationException>(() => ml.MulticlassClassification.Trainers.HazyS4D(Waves.SmallOptions()).Fit(Waves.Keyed(ml, rows)));
        Assert.That(ex!.Message, Does.Contain("'Features'").And.Contain("row 7 ").And.Contain("no time steps"));
    }

    [Test]
    public void EmptyRowScoresAsOneZeroStepWithoutFailingTheOtherRows()
    {
        var ml = new MLContext(1);
        using var model = ml.MulticlassClassification.Trainers.HazyS4D(Waves.SmallOptions()).Fit(Waves.Keyed(ml, Waves.MakeVariable(60, 1, maxLength: 12)));
        var rows = Waves.MakeVariable(3, 2);
        var withEmpty = new[] { rows[0], new Waves.VariableRow { Class = "mid", Features = Array.Empty<float>() }, rows[2] };
        var zeroStep = new[] { new Waves.VariableRow { Class = "mid", Features = new float[Waves.Channels] } };

        var scores = ConformanceHelpers.ReadScores(model.Transform(Waves.Keyed(ml, withEmpty)));
        var alone = ConformanceHelpers.ReadScores(model.Transform(Waves.Keyed(ml, rows)));
        var zero = ConformanceHelpers.ReadScores(model.Transform(Waves.Keyed(ml, zeroStep)));
        Assert.That(scores, Has.Length.EqualTo(3));
        Assert.That(scores[0], Is.EqualTo(alone[0]));
        Assert.That(scores[2], Is.EqualTo(alone[2]));
        Assert.That(scores[1], Is.EqualTo(zero[0]));
        Assert.That(scores[1].All(float.IsFinite), Is.True);

        using var stream = new SequenceStreamingPredictor(model);
        ConformanceHelpers.AssertClose(stream.Append(ReadOnlySpan<float>.Empty), zero[0], 1e-4, "empty stream");
        Assert.That(stream.StepsSeen, Is.EqualTo(0));
        var afterRow = stream.Append(rows[0].Features);
        ConformanceHelpers.AssertClose(afterRow, alone[0], 1e-4, "stream of row 0");
        Assert.That(stream.Append(ReadOnlySpan<float>.Empty), Is.EqualTo(afterRow));
        Assert.That(stream.StepsSeen, Is.EqualTo(rows[0].Features.Length / Waves.Channels));
    }

    private static IDataView LongSeries(MLContext ml, int rows)
    {
        var rand = new Random(3);
        var data = Enumerable.Range(0, rows).Select(i =>
        {
            var x = new float[LongLength];
            for (int t = 0; t < x.Length; t += 97)
                x[t] = (float)rand.NextDouble();
            return new LongRow { Label = i % 2 == 0, Features = x };
        }).ToList();
        var schema = SchemaDefinition.Create(typeof(LongRow));
        schema["Features"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, LongLength);
        return ml.Data.LoadFromEnumerable(data, schema);
    }

    private sealed class LongRow
    {
        public bool Label;
        public float[] Features = Array.Empty<float>();
    }

    /// <summary>Layers that count their training calls and cancel the token on the first.</summary>
    private sealed class CancellingBackbone : ISequenceBackboneFactory
    {
        private readonly CancellationTokenSource _cts;

        public CancellingBackbone(CancellationTokenSource cts) => _cts = cts;

        public int Calls { get; set; }

        public IReadOnlyList<ParameterGroupOptions> LayerParameterGroups => Array.Empty<ParameterGroupOptions>();

        public IReadOnlyList<double> TrainingValuesPerStep(SequenceNetworkShape shape) => new[] { 2.0 * shape.Width };

        public IReadOnlyList<nn.Module<Tensor, Tensor>> CreateLayers(int index, SequenceNetworkShape shape) =>
            new[] { new CancellingLayer(this, shape.Width) };

        public void Called()
        {
            Calls++;
            _cts.Cancel();
        }
    }

    private sealed class CancellingLayer : nn.Module<Tensor, Tensor>, ISequenceLayer
    {
        private readonly CancellingBackbone _owner;
        private readonly Linear mix;

        public CancellingLayer(CancellingBackbone owner, int width) : base(nameof(CancellingLayer))
        {
            _owner = owner;
            mix = nn.Linear(width, width);
            RegisterComponents();
        }

        public override Tensor forward(Tensor input) => Forward(input, null);

        public Tensor Forward(Tensor input, Tensor? mask)
        {
            if (training)
                _owner.Called();
            return mix.forward(input);
        }

        public string ExportOnnx(OnnxGraphBuilder graph, string input, string? mask, int maxLength) => throw new NotSupportedException();

        public ISequenceLayerStepper? CreateStepper(int batchSize) => null;
    }
}
