package processor

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/internal/txloop"
)

func TestByPartitionKeepsOrder(t *testing.T) {
	var recs []*kgo.Record
	for i, p := range []int32{2, 0, 2, 1, 0, 2} {
		recs = append(recs, &kgo.Record{Partition: p, Offset: int64(i)})
	}
	got := byPartition(recs)
	want := [][]int64{{0, 2, 5}, {1, 4}, {3}} // partitions in order of first appearance
	if len(got) != len(want) {
		t.Fatalf("%d parts, want %d", len(got), len(want))
	}
	for i, part := range got {
		if len(part) != len(want[i]) {
			t.Fatalf("part %d has %d records, want %d", i, len(part), len(want[i]))
		}
		for j, r := range part {
			if r.Offset != want[i][j] {
				t.Fatalf("part %d record %d is offset %d, want %d", i, j, r.Offset, want[i][j])
			}
		}
	}
}

func TestFirstErrorPrefersTheCause(t *testing.T) {
	crash := &txloop.Stop{Err: ErrCrashed}
	canceled := fmt.Errorf("apply: %w", context.Canceled)
	loss := fmt.Errorf("apply: %w", store.ErrBehind)
	for _, tc := range []struct {
		name string
		errs []error
		want error
	}{
		{"none", []error{nil, nil}, nil},
		{"one", []error{nil, loss}, store.ErrBehind},
		{"cause after the cancellation it caused", []error{canceled, loss, canceled}, store.ErrBehind},
		{"only cancellations", []error{canceled, nil}, context.Canceled},
		{"an injected crash first", []error{loss, crash, canceled}, ErrCrashed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := firstError(tc.errs)
			if (tc.want == nil) != (got == nil) || (tc.want != nil && !errors.Is(got, tc.want)) {
				t.Fatalf("firstError = %v, want %v", got, tc.want)
			}
		})
	}
}
