import { describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import ProbabilityBar from '../src/components/ProbabilityBar.vue'

describe('ProbabilityBar', () => {
  it('fills to P(fake) and marks the threshold where it is', () => {
    const bar = mount(ProbabilityBar, { props: { p: 0.23, threshold: 0.6 } })
    expect(bar.find('.pbar-fill').element.style.width).toBe('23.0%')
    expect(bar.find('.pbar-threshold').element.style.left).toBe('60.0%')
    expect(bar.find('.pbar-value').text()).toBe('23%')
    expect(bar.find('.pbar-threshold-label').text()).toBe('threshold 60%')
    const meter = bar.find('[role="meter"]')
    expect(meter.attributes('aria-valuenow')).toBe('23')
    expect(meter.attributes('aria-valuetext')).toMatch(/23%.*60%/)
  })

  it('colours by which side of the threshold P(fake) falls', async () => {
    const bar = mount(ProbabilityBar, { props: { p: 0.59, threshold: 0.6 } })
    expect(bar.find('.pbar-fill').classes()).toContain('is-real')
    await bar.setProps({ p: 0.6 })
    expect(bar.find('.pbar-fill').classes()).toContain('is-fake')
  })

  it('keeps the threshold label inside the card when the threshold is near an end', () => {
    const align = (threshold) =>
      mount(ProbabilityBar, { props: { p: 0.5, threshold } }).find('.pbar-threshold-label').classes()
    expect(align(0.1)).toContain('align-start')
    expect(align(0.5)).toContain('align-center')
    expect(align(0.9)).toContain('align-end')
  })

  it('keeps the bar inside its track for values out of range', () => {
    const bar = mount(ProbabilityBar, { props: { p: 1.7, threshold: -1 } })
    expect(bar.find('.pbar-fill').element.style.width).toBe('100.0%')
    expect(bar.find('.pbar-threshold').element.style.left).toBe('0.0%')
  })

  it('shows a percentage near the ends with a decimal, so 99.6% does not read as 100%', () => {
    expect(mount(ProbabilityBar, { props: { p: 0.996, threshold: 0.5 } }).find('.pbar-value').text()).toBe('99.6%')
    expect(mount(ProbabilityBar, { props: { p: 0.004, threshold: 0.5 } }).find('.pbar-value').text()).toBe('0.4%')
  })
})
