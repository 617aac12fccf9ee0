package syms

import "container/list"

// lru is a map that holds at most max entries and drops the least recently
// used one to make room. Not safe for concurrent use.
type lru[K comparable, V any] struct {
	max   int
	order *list.List // of *lruEntry, most recently used first
	items map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
}

// newLRU returns an empty lru of at most n entries; n < 1 means 1, so the
// entry just added is always kept.
func newLRU[K comparable, V any](n int) *lru[K, V] {
	return &lru[K, V]{max: max(n, 1), order: list.New(), items: map[K]*list.Element{}}
}

// get returns the value of k and marks it used.
func (l *lru[K, V]) get(k K) (V, bool) {
	if e, ok := l.items[k]; ok {
		l.order.MoveToFront(e)
	}
	return l.peek(k)
}

// peek returns the value of k without marking it used.
func (l *lru[K, V]) peek(k K) (V, bool) {
	e, ok := l.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	return e.Value.(*lruEntry[K, V]).val, true
}

// put sets the value of k, marks it used and drops the least recently used
// entries beyond max.
func (l *lru[K, V]) put(k K, v V) {
	if e, ok := l.items[k]; ok {
		e.Value.(*lruEntry[K, V]).val = v
		l.order.MoveToFront(e)
		return
	}
	l.items[k] = l.order.PushFront(&lruEntry[K, V]{k, v})
	for l.order.Len() > l.max {
		l.remove(l.order.Back().Value.(*lruEntry[K, V]).key)
	}
}

func (l *lru[K, V]) remove(k K) {
	if e, ok := l.items[k]; ok {
		l.order.Remove(e)
		delete(l.items, k)
	}
}

func (l *lru[K, V]) len() int { return len(l.items) }

// keys returns the keys, most recently used first, without marking them
// used: a sweep that looks at every entry must not reorder them.
func (l *lru[K, V]) keys() []K {
	ks := make([]K, 0, l.order.Len())
	for e := l.order.Front(); e != nil; e = e.Next() {
		ks = append(ks, e.Value.(*lruEntry[K, V]).key)
	}
	return ks
}
